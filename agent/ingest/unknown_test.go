package ingest

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// hasUnknownReflect is the reflective form of hasUnknown: it walks every
// populated message field of m, whatever the schema.
func hasUnknownReflect(m protoreflect.Message) bool {
	if len(m.GetUnknown()) > 0 {
		return true
	}
	found := false
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			list := v.List()
			for i := 0; i < list.Len() && !found; i++ {
				found = hasUnknownReflect(list.Get(i).Message())
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				found = hasUnknownReflect(mv.Message())
				return !found
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			found = hasUnknownReflect(v.Message())
		}
		return !found
	})
	return found
}

// messagePaths returns the field paths of every message nested in a
// message of descriptor md, e.g. "records.executable.running".
func messagePaths(md protoreflect.MessageDescriptor, prefix []protoreflect.FieldDescriptor) [][]protoreflect.FieldDescriptor {
	var paths [][]protoreflect.FieldDescriptor
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		var sub protoreflect.MessageDescriptor
		switch {
		case fd.IsMap():
			sub = fd.MapValue().Message()
		default:
			sub = fd.Message()
		}
		if sub == nil {
			continue
		}
		path := append(append([]protoreflect.FieldDescriptor(nil), prefix...), fd)
		paths = append(paths, path)
		paths = append(paths, messagePaths(sub, path)...)
	}
	return paths
}

// TestHasUnknownCoversSchema puts an unknown field into each message that
// a ProcessBatch can contain, one at a time, and checks that hasUnknown
// finds it, so that a message field added to the schema cannot slip past.
func TestHasUnknownCoversSchema(t *testing.T) {
	paths := messagePaths((&binwatchv1.ProcessBatch{}).ProtoReflect().Descriptor(), nil)
	if len(paths) < 7 {
		t.Fatalf("found %d nested message fields in ProcessBatch, want at least 7", len(paths))
	}
	for _, path := range paths {
		var names []string
		for _, fd := range path {
			names = append(names, string(fd.Name()))
		}
		name := strings.Join(names, ".")
		t.Run(name, func(t *testing.T) {
			b := &binwatchv1.ProcessBatch{}
			m := b.ProtoReflect()
			for _, fd := range path {
				switch {
				case fd.IsList():
					list := m.Mutable(fd).List()
					v := list.NewElement()
					list.Append(v)
					m = v.Message()
				case fd.IsMap():
					mp := m.Mutable(fd).Map()
					v := mp.NewValue()
					mp.Set(protoreflect.ValueOfString("k").MapKey(), v)
					m = v.Message()
				default:
					m = m.Mutable(fd).Message()
				}
			}
			m.SetUnknown([]byte{0xf8, 0x07, 0x01}) // field 127, varint 1
			if !hasUnknownReflect(b.ProtoReflect()) {
				t.Fatal("reflective walk misses the unknown field")
			}
			if !hasUnknown(b) {
				t.Errorf("hasUnknown misses an unknown field in %s", name)
			}
			if err := unknownFieldError(b.ProtoReflect(), ""); err == nil || !strings.Contains(err.Error(), names[0]) {
				t.Errorf("unknownFieldError = %v, want an error naming %s", err, name)
			}
		})
	}
}

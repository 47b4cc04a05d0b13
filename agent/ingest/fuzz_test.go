package ingest

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// FuzzDecode feeds arbitrary bytes to Decode. Decode must not panic, and a
// batch that it accepts must be accepted again, unchanged, after a protobuf
// round trip.
func FuzzDecode(f *testing.F) {
	valid := marshal(f, validBatch())
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	for _, i := range []int{0, 1, 7, len(valid) / 3, len(valid) - 1} {
		flipped := append([]byte(nil), valid...)
		flipped[i] ^= 0x5a
		f.Add(flipped)
	}
	f.Add(append(append([]byte(nil), valid...), valid...))
	f.Add(marshal(f, &binwatchv1.IntegrityAlert{Id: "x", Host: &binwatchv1.AlertHost{Id: testHost}}))
	f.Add(marshal(f, validBatch().Stats))
	f.Add(marshal(f, timestamppb.New(testNow)))
	f.Add([]byte{})
	f.Add([]byte(`{"host_id":"web-01"}`))

	f.Fuzz(func(t *testing.T, data []byte) {
		var raw binwatchv1.ProcessBatch
		if proto.Unmarshal(data, &raw) == nil && hasUnknown(&raw) != hasUnknownReflect(raw.ProtoReflect()) {
			t.Fatalf("hasUnknown = %v, reflective walk = %v", hasUnknown(&raw), hasUnknownReflect(raw.ProtoReflect()))
		}
		b, err := decodeAt(testSubject, testHeader, data, testNow)
		if err != nil {
			if b != nil {
				t.Fatalf("decode returned a batch with error %v", err)
			}
			if Reason(err) == ReasonOther {
				t.Fatalf("decode error %v has no reason label", err)
			}
			return
		}
		again, err := proto.MarshalOptions{Deterministic: true}.Marshal(b)
		if err != nil {
			t.Fatalf("marshal accepted batch: %v", err)
		}
		b2, err := decodeAt(testSubject, testHeader, again, testNow)
		if err != nil {
			t.Fatalf("accepted batch rejected after a round trip: %v", err)
		}
		if !proto.Equal(b, b2) {
			t.Fatalf("round trip changed the batch: %v, want %v", b2, b)
		}
	})
}

// BenchmarkDecode measures decoding and validating a 2000-record batch.
func BenchmarkDecode(b *testing.B) {
	batch := validBatch()
	records := batch.Records
	batch.Records = nil
	for i := range 2000 {
		r := proto.Clone(records[i%len(records)]).(*binwatchv1.ProcessRecord)
		r.Pid = int32(i + 1)
		batch.Records = append(batch.Records, r)
	}
	data := marshal(b, batch)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeAt(testSubject, testHeader, data, testNow); err != nil {
			b.Fatal(err)
		}
	}
}

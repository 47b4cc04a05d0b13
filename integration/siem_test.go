package integration

import (
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/nats-io/nats-server/v2/conf"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// vectorSource is the part of a Vector nats source that must match the
// hub's configuration.
type vectorSource struct {
	Type     string `toml:"type"`
	URL      string `toml:"url"`
	Decoding struct {
		Codec string `toml:"codec"`
	} `toml:"decoding"`
	Auth struct {
		Strategy     string `toml:"strategy"`
		UserPassword struct {
			User     string `toml:"user"`
			Password string `toml:"password"`
		} `toml:"user_password"`
	} `toml:"auth"`
	JetStream struct {
		Stream   string `toml:"stream"`
		Consumer string `toml:"consumer"`
	} `toml:"jetstream"`
}

// TestVectorConfig checks that deployments/siem/vector.toml reads the
// stream and durable consumer of server-config as the siem user, from the
// hub's client ports. Vector itself is not run: it is not packaged here.
func TestVectorConfig(t *testing.T) {
	var config struct {
		Sources    map[string]vectorSource `toml:"sources"`
		Transforms map[string]struct {
			Inputs []string `toml:"inputs"`
			Source string   `toml:"source"`
		} `toml:"transforms"`
	}
	path := filepath.Join(repoRoot, "deployments", "siem", "vector.toml")
	if _, err := toml.DecodeFile(path, &config); err != nil {
		t.Fatalf("decoding %s: %v", path, err)
	}
	src, ok := config.Sources["binwatch_alerts"]
	if !ok {
		t.Fatalf("vector.toml has no source binwatch_alerts (sources %v)", config.Sources)
	}

	stream := streamConfig(t)
	consumer := siemConsumerConfig(t)
	checks := []struct{ field, got, want string }{
		{"type", src.Type, "nats"},
		{"decoding.codec", src.Decoding.Codec, "json"},
		{"auth.strategy", src.Auth.Strategy, "user_password"},
		{"auth.user_password.user", src.Auth.UserPassword.User, "siem"},
		{"auth.user_password.password", src.Auth.UserPassword.Password, "${HUB_SIEM_PASSWORD}"},
		{"jetstream.stream", src.JetStream.Stream, stream.Name},
		{"jetstream.consumer", src.JetStream.Consumer, consumer.Durable},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("sources.binwatch_alerts.%s = %q, want %q", c.field, c.got, c.want)
		}
	}

	clientPorts := map[string]bool{}
	for _, kv := range configEnv() {
		name, value, _ := strings.Cut(kv, "=")
		t.Setenv(name, value)
	}
	for _, name := range []string{"hub-1.conf", "hub-2.conf", "hub-3.conf"} {
		m, err := conf.ParseFile(filepath.Join(repoRoot, "server-config", name))
		if err != nil {
			t.Fatalf("parsing %s: %v", name, err)
		}
		listen, _ := m["listen"].(string)
		clientPorts[listen] = true
	}
	for _, raw := range strings.Split(src.URL, ",") {
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "nats" || !clientPorts[u.Host] {
			t.Errorf("source url %q is not a hub client address (%v)", raw, clientPorts)
		}
	}

	ecs, ok := config.Transforms["binwatch_ecs"]
	if !ok || !slices.Equal(ecs.Inputs, []string{"binwatch_alerts"}) {
		t.Fatalf("transform binwatch_ecs = %+v, want inputs [binwatch_alerts]", ecs)
	}
	// Every alert field that the mapping reads must be a field of
	// IntegrityAlert in protobuf JSON (lowerCamelCase) form.
	alertJSONFields := protoJSONPaths((&binwatchv1.IntegrityAlert{}).ProtoReflect().Descriptor(), "", map[string]bool{})
	for _, field := range regexp.MustCompile(`\balert\.([A-Za-z0-9.]+)`).FindAllStringSubmatch(ecs.Source, -1) {
		if !alertJSONFields[field[1]] {
			t.Errorf("VRL reads alert.%s, which is not a field of IntegrityAlert in protobuf JSON", field[1])
		}
	}
}

// protoJSONPaths returns the protobuf JSON paths of every field of md,
// descending into message fields other than timestamps: "host.bootId".
func protoJSONPaths(md protoreflect.MessageDescriptor, prefix string, paths map[string]bool) map[string]bool {
	fields := md.Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		path := prefix + f.JSONName()
		paths[path] = true
		if f.Kind() == protoreflect.MessageKind && f.Message().FullName() != "google.protobuf.Timestamp" {
			protoJSONPaths(f.Message(), path+".", paths)
		}
	}
	return paths
}

package integration

import (
	"bufio"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/nats-io/nats-server/v2/conf"
)

// composeVariables are the variables that docker-compose.yml requires.
var composeVariables = []string{
	"HUB_ADMIN_PASSWORD", "HUB_SIEM_PASSWORD", "HUB_WATCH_PASSWORD", "HUB_OPS_PASSWORD",
	"HUB_HOSTA_COLLECTOR_PASSWORD", "HUB_HOSTA_AGENT_PASSWORD", "HUB_HOSTA_LEAF_PASSWORD",
	"HUB_HOSTB_COLLECTOR_PASSWORD", "HUB_HOSTB_AGENT_PASSWORD", "HUB_HOSTB_LEAF_PASSWORD",
	"LEAF_COLLECTOR_PASSWORD", "LEAF_AGENT_PASSWORD",
}

// binaryOfTarget maps the stages of deployments/Dockerfile to the binary
// that their entrypoint runs.
var binaryOfTarget = map[string]string{
	"agent":     "binwatch-agent",
	"collector": "binwatch-collector",
	"nats":      "nats-server",
}

func loadCompose(t *testing.T, env map[string]string) (*types.Project, error) {
	t.Helper()
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	details := types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, "docker-compose.yml")}},
		Environment: env,
	}
	return loader.LoadWithContext(t.Context(), details, func(o *loader.Options) {
		o.SetProjectName("binwatch", true)
	})
}

// TestComposeFile loads docker-compose.yml with the compose-spec loader and
// checks each service against the files and binaries of the repository.
func TestComposeFile(t *testing.T) {
	env := map[string]string{}
	for _, name := range composeVariables {
		env[name] = "pw-" + strings.ToLower(name)
	}
	project, err := loadCompose(t, env)
	if err != nil {
		t.Fatalf("loading docker-compose.yml: %v", err)
	}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	stages := dockerfileStages(t, filepath.Join(root, "deployments", "Dockerfile"))

	t.Run("passwords required", func(t *testing.T) {
		for _, missing := range composeVariables {
			partial := map[string]string{}
			for k, v := range env {
				if k != missing {
					partial[k] = v
				}
			}
			_, err := loadCompose(t, partial)
			if err == nil || !strings.Contains(err.Error(), missing) {
				t.Errorf("loading without %s: error %v, want one naming %s", missing, err, missing)
			}
		}
	})

	wantServices := []string{"hub-1", "hub-2", "hub-3", "leaf-hosta", "agent-hosta", "collector-hosta", "agent-hostb", "collector-hostb"}
	if got := project.ServiceNames(); !sameSet(got, wantServices) {
		t.Errorf("services = %q, want %q", got, wantServices)
	}

	for _, name := range project.ServiceNames() {
		svc := project.Services[name]
		t.Run(name, func(t *testing.T) {
			if svc.Build == nil {
				t.Fatal("no build section, want deployments/Dockerfile")
			}
			dockerfile := filepath.Join(svc.Build.Context, svc.Build.Dockerfile)
			if rel, err := filepath.Rel(root, dockerfile); err != nil || rel != filepath.Join("deployments", "Dockerfile") {
				t.Errorf("dockerfile = %s, want deployments/Dockerfile in the repository", dockerfile)
			}
			if _, ok := stages[svc.Build.Target]; !ok {
				t.Errorf("build target %q is not a stage of deployments/Dockerfile (stages %v)", svc.Build.Target, stages)
			}
			if svc.NetworkMode != "host" {
				t.Errorf("network_mode = %q, want host", svc.NetworkMode)
			}
			if !slices.Equal(svc.CapDrop, []string{"ALL"}) {
				t.Errorf("cap_drop = %q, want [ALL]", svc.CapDrop)
			}
			if !svc.ReadOnly {
				t.Error("read_only = false, want true")
			}
			checkVolumes(t, root, svc)

			switch binary := binaryOfTarget[svc.Build.Target]; binary {
			case "nats-server":
				checkNATSService(t, root, svc)
			case "binwatch-collector":
				if svc.Pid != "host" {
					t.Errorf("pid = %q, want host", svc.Pid)
				}
				if want := []string{"SYS_PTRACE", "DAC_READ_SEARCH"}; !sameSet(svc.CapAdd, want) {
					t.Errorf("cap_add = %q, want %q", svc.CapAdd, want)
				}
				checkBinwatchService(t, svc, binary)
			case "binwatch-agent":
				if len(svc.CapAdd) != 0 {
					t.Errorf("cap_add = %q, want none", svc.CapAdd)
				}
				if user := stages[svc.Build.Target]; svc.User != "" || user == "" || user == "0" || strings.HasPrefix(user, "0:") || user == "root" {
					t.Errorf("agent runs as user %q (compose) / %q (image), want the image's non-root user", svc.User, user)
				}
				checkBinwatchService(t, svc, binary)
			default:
				t.Errorf("build target %q runs no known binary", svc.Build.Target)
			}
		})
	}

	t.Run("URLs reach listeners", func(t *testing.T) {
		listeners := composeListeners(t, root, project)
		for _, name := range project.ServiceNames() {
			for _, u := range serviceURLs(project.Services[name]) {
				if !listeners[u.Host] {
					t.Errorf("%s: %s names %s, where no service listens (listeners %v)", name, u.Redacted(), u.Host, listeners)
				}
			}
		}
	})
}

// checkVolumes requires every bind source to exist: in the repository for
// relative paths, or /proc, the only host path that a service may read.
func checkVolumes(t *testing.T, root string, svc types.ServiceConfig) {
	t.Helper()
	for _, v := range svc.Volumes {
		switch v.Type {
		case types.VolumeTypeVolume:
			continue
		case types.VolumeTypeBind:
		default:
			t.Errorf("volume %s: type %q, want bind or volume", v.Target, v.Type)
			continue
		}
		if !v.ReadOnly {
			t.Errorf("bind %s:%s is writable, want read-only", v.Source, v.Target)
		}
		if v.Source == "/proc" {
			continue
		}
		rel, err := filepath.Rel(root, v.Source)
		if err != nil || strings.HasPrefix(rel, "..") {
			t.Errorf("bind source %s is outside the repository", v.Source)
			continue
		}
		if _, err := os.Stat(v.Source); err != nil {
			t.Errorf("bind source %s: %v", rel, err)
		}
	}
}

// checkNATSService runs nats-server -t on the service's configuration file,
// found through its bind mounts, with the service's command-line flags and
// environment, and requires each variable of the environment to be used by
// the configuration.
func checkNATSService(t *testing.T, root string, svc types.ServiceConfig) {
	t.Helper()
	args := slices.Clone([]string(svc.Command))
	i := slices.Index(args, "-c")
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("command %q has no -c <file>", args)
	}
	hostPath := hostPathOf(svc, args[i+1])
	if hostPath == "" {
		t.Fatalf("configuration %s is not in a bind mount", args[i+1])
	}
	args[i+1] = hostPath

	cmd := exec.Command(natsServerBin, append([]string{"-t"}, args...)...)
	cmd.Env = os.Environ()
	configText := allConfigText(t, root)
	for key, value := range svc.Environment {
		if value == nil {
			t.Errorf("environment %s has no value", key)
			continue
		}
		cmd.Env = append(cmd.Env, key+"="+*value)
		if !regexp.MustCompile(`\$` + regexp.QuoteMeta(key) + `\b`).MatchString(configText) {
			t.Errorf("environment %s is not used by any file in server-config", key)
		}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("nats-server -t %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// checkBinwatchService requires every flag of the command and every
// BINWATCH_ variable of the environment to exist in the binary's --help.
func checkBinwatchService(t *testing.T, svc types.ServiceConfig, binary string) {
	t.Helper()
	for key := range svc.Environment {
		if !strings.HasPrefix(key, "BINWATCH_") {
			t.Errorf("environment %s: want only BINWATCH_ variables for %s", key, binary)
		}
	}
	for _, v := range svc.Volumes {
		if v.Type == types.VolumeTypeBind && v.Source == "/proc" {
			if proc := serviceSetting(svc, "proc", "BINWATCH_PROC"); proc != v.Target {
				t.Errorf("collector scans %q, want the /proc bind mount %s", proc, v.Target)
			}
		}
	}
	help := binaryHelp(t, binary)
	for key := range svc.Environment {
		if !hasVariable(help, key) {
			t.Errorf("environment %s is not a setting of %s", key, binary)
		}
	}
	for _, arg := range svc.Command {
		if !strings.HasPrefix(arg, "-") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		if !hasFlag(help, name) {
			t.Errorf("command flag %s is not a flag of %s", arg, binary)
		}
	}
}

// serviceSetting returns the value of --flag in the command, or else of the
// environment variable.
func serviceSetting(svc types.ServiceConfig, flag, variable string) string {
	args := []string(svc.Command)
	for i, arg := range args {
		if v, ok := strings.CutPrefix(arg, "--"+flag+"="); ok {
			return v
		}
		if arg == "--"+flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	if v := svc.Environment[variable]; v != nil {
		return *v
	}
	return ""
}

// hostPathOf maps a path inside the container to the host through the
// service's bind mounts, or returns "".
func hostPathOf(svc types.ServiceConfig, path string) string {
	for _, v := range svc.Volumes {
		if v.Type != types.VolumeTypeBind {
			continue
		}
		if rel, ok := strings.CutPrefix(path, v.Target+"/"); ok {
			return filepath.Join(v.Source, rel)
		}
	}
	return ""
}

func allConfigText(t *testing.T, root string) string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(root, "server-config", "*.conf"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(data)
	}
	return b.String()
}

// composeListeners returns the loopback host:port addresses that the
// services listen on: the listen addresses of the nats-server
// configurations (the client port moved by -p), and the embedded server of
// each agent.
func composeListeners(t *testing.T, root string, project *types.Project) map[string]bool {
	t.Helper()
	listeners := map[string]bool{}
	for _, name := range project.ServiceNames() {
		svc := project.Services[name]
		switch binaryOfTarget[svc.Build.Target] {
		case "binwatch-agent":
			if listen := serviceSetting(svc, "listen", "BINWATCH_LISTEN"); listen != "" {
				listeners[listen] = true
			} else if serviceSetting(svc, "nats-url", "BINWATCH_NATS_URL") == "" {
				listeners["127.0.0.1:4222"] = true
			}
		case "nats-server":
			args := []string(svc.Command)
			i := slices.Index(args, "-c")
			if i < 0 || i+1 >= len(args) {
				continue
			}
			for key, value := range svc.Environment {
				if value != nil {
					t.Setenv(key, *value)
				}
			}
			m, err := conf.ParseFile(hostPathOf(svc, args[i+1]))
			if err != nil {
				t.Fatalf("%s: parsing %s: %v", name, args[i+1], err)
			}
			client, _ := m["listen"].(string)
			if p := slices.Index(args, "-p"); p >= 0 && p+1 < len(args) {
				host, _, _ := strings.Cut(client, ":")
				client = host + ":" + args[p+1]
			}
			listeners[client] = true
			for _, block := range []string{"cluster", "leafnodes"} {
				if b, ok := m[block].(map[string]any); ok {
					if l, ok := b["listen"].(string); ok {
						listeners[l] = true
					}
				}
			}
		}
	}
	return listeners
}

var natsURLPattern = regexp.MustCompile(`\b(nats|nats-leaf|tls)://[^\s",\]]+`)

// serviceURLs returns the NATS URLs in a service's command and environment.
func serviceURLs(svc types.ServiceConfig) []*url.URL {
	var text []string
	text = append(text, svc.Command...)
	for _, v := range svc.Environment {
		if v != nil {
			text = append(text, *v)
		}
	}
	var urls []*url.URL
	for _, s := range text {
		for _, m := range natsURLPattern.FindAllString(s, -1) {
			if u, err := url.Parse(m); err == nil {
				urls = append(urls, u)
			}
		}
	}
	return urls
}

// dockerfileStages returns the named stages of a Dockerfile with the last
// USER of each.
func dockerfileStages(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stages := map[string]string{}
	stage := ""
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		if len(fields) == 0 {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			stage = ""
			if len(fields) == 4 && strings.EqualFold(fields[2], "AS") {
				stage = fields[3]
				stages[stage] = ""
			}
		case "USER":
			if stage != "" && len(fields) == 2 {
				stages[stage] = fields[1]
			}
		}
	}
	if err := scanner.Err(); err != nil {
		t.Fatal(err)
	}
	return stages
}

func sameSet(got, want []string) bool {
	a, b := slices.Clone(got), slices.Clone(want)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

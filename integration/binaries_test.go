package integration

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// binwatchCommands are the binaries of the repository, by name.
var binwatchCommands = map[string]string{
	"binwatch-agent":     "./agent/cmd/binwatch-agent",
	"binwatch-collector": "./collector/cmd/binwatch-collector",
}

// builtHelp holds the --help output of each binwatch binary, built once
// per test run.
var builtHelp struct {
	mu   sync.Mutex
	help map[string]string
	errs map[string]error
}

// binaryHelp builds the binwatch binary name and returns its --help output.
// It skips the test when the binary does not build, so that the checks of
// deployment files against the binaries' flags run once the code compiles.
func binaryHelp(t *testing.T, name string) string {
	t.Helper()
	builtHelp.mu.Lock()
	defer builtHelp.mu.Unlock()
	if builtHelp.help == nil {
		builtHelp.help = map[string]string{}
		builtHelp.errs = map[string]error{}
	}
	if help, ok := builtHelp.help[name]; ok {
		return help
	}
	if err, ok := builtHelp.errs[name]; ok {
		t.Skipf("%s does not build, so its flags are not checked: %v", name, err)
	}
	help, err := buildAndHelp(t, name)
	if err != nil {
		builtHelp.errs[name] = err
		t.Skipf("%s does not build, so its flags are not checked: %v", name, err)
	}
	builtHelp.help[name] = help
	return help
}

func buildAndHelp(t *testing.T, name string) (string, error) {
	pkg, ok := binwatchCommands[name]
	if !ok {
		t.Fatalf("no binwatch binary named %q", name)
	}
	bin := filepath.Join(filepath.Dir(natsServerBin), name)
	build := exec.Command("go", "build", "-o", bin, pkg)
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, firstLines(out, 10))
	}
	// The flag package exits with status 0 or 2 after printing the usage,
	// depending on the program; the text is what counts.
	out, _ := exec.Command(bin, "--help").CombinedOutput()
	help := string(out)
	if !strings.Contains(help, "-log-format") {
		return "", fmt.Errorf("%s --help printed no flags:\n%s", name, firstLines(out, 10))
	}
	return help, nil
}

func firstLines(out []byte, n int) string {
	lines := strings.SplitN(string(out), "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

// hasFlag reports whether help lists the flag name (without dashes), as the
// flag package prints it: "-name" at the start of a line.
func hasFlag(help, name string) bool {
	re := regexp.MustCompile(`(?m)^\s*--?` + regexp.QuoteMeta(name) + `(\s|=|$)`)
	return re.MatchString(help)
}

// hasVariable reports whether help names the environment variable.
func hasVariable(help, name string) bool {
	return regexp.MustCompile(`\b` + regexp.QuoteMeta(name) + `\b`).MatchString(help)
}

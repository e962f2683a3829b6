// Package integration runs the real binaries (agentd, bridges, the iroh
// sidecar) as separate processes, the way an operator would.
package integration

import (
	"bytes"
	"context"
	"fmt"
	"github.com/agentd/agentd/client"
	"github.com/agentd/agentd/devicecert"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// binDir holds the binaries built once for the whole package.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "agentd-it-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	cmd := exec.Command("go", "build", "-o", dir+"/", "../cmd/...")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build binaries:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func agentdBin() string { return filepath.Join(binDir, "agentd") }

// repoRoot is the module root, where sidecar/ lives.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// result is a finished command.
type result struct {
	code           int
	stdout, stderr string
}

// agentd runs the binary to completion.
func agentd(t testing.TB, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, agentdBin(), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("agentd %v: %v", args, err)
	}
	return result{code, out.String(), errb.String()}
}

// daemon is a background `agentd serve`.
type daemon struct {
	cmd    *exec.Cmd
	dir    string
	stderr *syncBuffer
	done   chan error
}

// startServe starts `agentd serve dir` and waits until it answers the owner
// on its unix socket. At cleanup the daemon must stop within 10 s of SIGTERM.
func startServe(tb testing.TB, dir string, env ...string) *daemon {
	tb.Helper()
	return startServeArgs(tb, dir, nil, env...)
}

// startServeArgs is startServe with extra arguments (e.g. --init, which
// creates dir: the owner identity appears once serve has made it).
func startServeArgs(tb testing.TB, dir string, args []string, env ...string) *daemon {
	tb.Helper()
	cmd := exec.Command(agentdBin(), append([]string{"serve", dir}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	buf := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = buf, buf
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	d := &daemon{cmd: cmd, dir: dir, stderr: buf, done: make(chan error, 1)}
	go func() { d.done <- cmd.Wait() }()
	tb.Cleanup(func() {
		if _, err := d.stop(); err != nil {
			d.kill()
			tb.Error(err)
		}
	})
	var c *client.Dialer
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-d.done:
			d.done <- err
			tb.Fatalf("agentd serve exited early: %v\n%s", err, buf.String())
		default:
		}
		if c == nil {
			owner, err := devicecert.LoadIdentity(filepath.Join(dir, "keys", "owner.identity"))
			if err != nil {
				if len(args) == 0 {
					tb.Fatal(err)
				}
				time.Sleep(50 * time.Millisecond)
				continue
			}
			c = client.Unix(filepath.Join(dir, "agentd.sock"), owner)
			defer c.CloseIdle()
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.GetJSON(ctx, "/api/agent-info", nil)
		cancel()
		if err == nil {
			return d
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatalf("agentd serve did not come up\n%s", buf.String())
	return nil
}

// stop sends SIGTERM and returns how long the daemon took to exit.
func (d *daemon) stop() (time.Duration, error) {
	start := time.Now()
	d.cmd.Process.Signal(syscall.SIGTERM) // an error means it has exited: done says how
	select {
	case err := <-d.done:
		d.done <- err
		return time.Since(start), err
	case <-time.After(10 * time.Second):
		return 0, fmt.Errorf("agentd did not stop within 10s\n%s", d.stderr.String())
	}
}

func (d *daemon) kill() {
	if d.cmd.ProcessState == nil {
		d.cmd.Process.Kill()
		select {
		case err := <-d.done:
			d.done <- err
		case <-time.After(5 * time.Second):
		}
	}
}

// newAgent runs `agentd init` in a fresh temp dir with iroh off unless
// keepIroh, and returns the directory.
func newAgent(t testing.TB, keepIroh bool) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "agent")
	if r := agentd(t, []string{"OPENAI_API_KEY=", "ANTHROPIC_API_KEY="}, "init", dir); r.code != 0 {
		t.Fatalf("init: %d %s", r.code, r.stderr)
	}
	if !keepIroh {
		setIroh(t, dir, false)
	}
	return dir
}

func setIroh(t testing.TB, dir string, on bool) {
	t.Helper()
	p := filepath.Join(dir, "openagent.yaml")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "  iroh:\n    enabled: true", fmt.Sprintf("  iroh:\n    enabled: %v", on), 1)
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

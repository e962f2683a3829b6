package integration

import (
	"context"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/provider/providertest"
)

// TestChatCtrlCInterrupts: Ctrl-C in the interactive chat interrupts the
// running reply (the partial reply is marked), and the chat goes on.
func TestChatCtrlCInterrupts(t *testing.T) {
	words := make([]string, 100)
	for i := range words {
		words[i] = "word "
	}
	slow := providertest.Response{Text: words, Delay: 100 * time.Millisecond}
	fake := providertest.NewOpenAI(t, slow, providertest.Response{Text: []string{"second ", "answer"}})
	dir := newAgent(t, false)
	useFakeOpenAI(t, dir, fake)
	startServe(t, dir)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, agentdBin(), "chat", dir, "--session", "ctrlc")
	stdin, _ := cmd.StdinPipe()
	stdoutR, stdoutW := io.Pipe()
	cmd.Stdout = stdoutW
	errb := &syncBuffer{}
	cmd.Stderr = errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out := make(chan string, 256)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := stdoutR.Read(buf)
			if n > 0 {
				out <- string(buf[:n])
			}
			if err != nil {
				close(out)
				return
			}
		}
	}()
	waitFor := func(want string) string {
		t.Helper()
		var seen strings.Builder
		deadline := time.After(20 * time.Second)
		for {
			select {
			case s, ok := <-out:
				if !ok {
					t.Fatalf("chat output ended before %q; got %q\nstderr: %s", want, seen.String(), errb.String())
				}
				seen.WriteString(s)
				if strings.Contains(seen.String(), want) {
					return seen.String()
				}
			case <-deadline:
				t.Fatalf("no %q in chat output %q\nstderr: %s", want, seen.String(), errb.String())
			}
		}
	}
	io.WriteString(stdin, "tell me a long story\n")
	waitFor("word")
	start := time.Now()
	cmd.Process.Signal(syscall.SIGINT)
	got := waitFor("[interrupted]")
	t.Logf("interrupted %v after Ctrl-C", time.Since(start).Round(time.Millisecond))
	if strings.Count(got, "word") >= 99 {
		t.Errorf("the whole reply streamed despite Ctrl-C: %q", got)
	}
	// The chat is still usable.
	io.WriteString(stdin, "and now?\n")
	waitFor("answer")
	stdin.Close()
	err := cmd.Wait()
	stdoutW.Close()
	if err != nil {
		t.Fatalf("chat exit: %v\n%s", err, errb.String())
	}
	if !strings.Contains(errb.String(), "interrupted; Ctrl-C again to quit") {
		t.Errorf("stderr: %s", errb.String())
	}
}

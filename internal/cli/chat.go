package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/agentd/agentd/client"
	"github.com/agentd/agentd/wire"
)

var (
	chatSession string
	chatMessage string
	chatTimeout time.Duration
	chatRemote  string
)

func init() {
	register(&command{
		name: "chat",
		args: "DIR [-m TEXT] [--session ID] | --remote enrolled|NODEID|TICKET [-m TEXT]",
		summary: `talk to the agent
With -m, sends one turn, prints the streamed reply to stdout (status lines go
to stderr) and exits: 0 when the turn completed, 1 on an error. Without -m,
an interactive chat: type a message and press Enter; /stop /clear /new /reset
/model ID /help are commands; Ctrl-C interrupts the running reply (twice, or
when idle, quits).`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&chatSession, "session", "cli", "session id (each session has its own history)")
			fs.StringVar(&chatMessage, "m", "", "send this one message and exit")
			fs.StringVar(&chatRemote, "remote", "", "talk over iroh to the agent this machine enrolled with (`agentd enroll`); value: \"enrolled\", a NodeId or a ticket")
			fs.DurationVar(&chatTimeout, "timeout", 10*time.Minute, "with -m: give up after this long")
		},
		run: runChat,
	})
}

func runChat(_ *flag.FlagSet, args []string) error {
	var d *client.Dialer
	if chatRemote != "" {
		if len(args) > 0 {
			return usagef("--remote takes no DIR")
		}
		target := chatRemote
		if target == "enrolled" {
			target = ""
		}
		rd, closeRemote, err := remoteDialer(target)
		if err != nil {
			return err
		}
		defer closeRemote()
		d = rd
	} else {
		arg, err := oneDir(args)
		if err != nil {
			return err
		}
		if d, _, err = localDialer(arg); err != nil {
			return err
		}
	}
	defer d.CloseIdle()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	dialCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	conn, err := d.DialWS(dialCtx)
	cancel()
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	if err := conn.Send(wire.SessionOpen{SessionID: chatSession}); err != nil {
		return err
	}
	if chatMessage != "" {
		ctx, cancel := context.WithTimeout(ctx, chatTimeout)
		defer cancel()
		return oneTurn(ctx, conn, chatSession, chatMessage, stdout, stderr)
	}
	return interactive(ctx, conn, os.Stdin)
}

// oneTurn sends text and prints frames until the turn completes.
func oneTurn(ctx context.Context, conn *client.Conn, session, text string, out, errw io.Writer) error {
	if err := conn.Send(wire.TextFinal{Text: text, SessionID: session}); err != nil {
		return err
	}
	pr := newPrinter(out, errw)
	var turnErr error
	for {
		m, err := conn.Recv(ctx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("no complete reply within %v", chatTimeout)
			}
			return fmt.Errorf("connection: %w", err)
		}
		if sid := frameSession(m); sid != "" && sid != session {
			continue
		}
		if _, ok := m.(wire.TurnComplete); ok {
			return turnErr
		}
		pr.show(m)
		if e, ok := m.(wire.Error); ok {
			turnErr = errors.New(e.Text)
			// A turn that failed before it started gets no turn_complete.
			if !pr.streamed[session] {
				return turnErr
			}
		}
	}
}

// interactive runs the terminal chat until EOF or /quit.
func interactive(ctx context.Context, conn *client.Conn, in io.Reader) error {
	session := chatSession
	fmt.Fprintf(stderr, "connected to %s (%s), session %q. /help for commands, Ctrl-D to quit.\n",
		conn.AgentName(), conn.Version(), session)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt)
	defer signal.Stop(sigs)

	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	frames := make(chan wire.Message, 64)
	recvErr := make(chan error, 1)
	go func() {
		for {
			m, err := conn.Recv(ctx)
			if err != nil {
				recvErr <- err
				return
			}
			frames <- m
		}
	}()
	pr := newPrinter(stdout, stderr)
	pr.usage = true
	pending, eof := 0, false // turns sent and not yet complete
	var giveUp <-chan time.Time
	lastInterrupt := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-recvErr:
			return fmt.Errorf("connection closed: %w", err)
		case <-giveUp:
			return nil
		case <-sigs:
			if pending == 0 || time.Since(lastInterrupt) < 2*time.Second {
				fmt.Fprintln(stderr)
				return nil
			}
			lastInterrupt = time.Now()
			conn.Send(wire.Interrupt{SessionID: session})
			fmt.Fprintln(stderr, "\n(interrupted; Ctrl-C again to quit)")
		case line, ok := <-lines:
			if !ok {
				// End of input: let a running turn finish, then leave.
				if pending == 0 {
					return nil
				}
				lines, eof = nil, true
				continue
			}
			line = strings.TrimSpace(line)
			if line == "" {
				continue
			}
			if line == "/quit" || line == "/exit" {
				return nil
			}
			if name, arg, isCmd := parseSlash(line); isCmd {
				conn.Send(wire.Command{Name: name, Args: arg, SessionID: session})
				continue
			}
			pending++
			conn.Send(wire.TextFinal{Text: line, SessionID: session})
		case m := <-frames:
			pr.show(m)
			switch f := m.(type) {
			case wire.TurnComplete:
				pending = max(pending-1, 0)
				if eof && pending == 0 {
					return nil
				}
			case wire.Error:
				// A failed turn is followed by turn_complete; a refused one
				// (queue full, bad session) is not. At EOF, give up waiting
				// shortly after an error.
				if eof {
					giveUp = time.After(2 * time.Second)
				}
			case wire.CommandResult:
				if f.NewSessionID != "" {
					session = f.NewSessionID
				}
			}
		}
	}
}

// parseSlash splits "/model gpt-4o" into ("model", "gpt-4o").
func parseSlash(line string) (name, arg string, ok bool) {
	if !strings.HasPrefix(line, "/") || len(line) < 2 {
		return "", "", false
	}
	name, arg, _ = strings.Cut(line[1:], " ")
	return name, strings.TrimSpace(arg), true
}

// printer shows gateway frames in the terminal: the reply on out (so
// `agentd chat -m` is scriptable), everything else on errw.
type printer struct {
	out, errw io.Writer
	usage     bool            // print each turn's tokens and cost
	streamed  map[string]bool // sessions whose current reply arrived as deltas
}

func newPrinter(out, errw io.Writer) *printer {
	return &printer{out: out, errw: errw, streamed: map[string]bool{}}
}

func (p *printer) show(m wire.Message) {
	switch f := m.(type) {
	case wire.Delta:
		p.streamed[f.SessionID] = true
		fmt.Fprint(p.out, f.Text)
	case wire.Response:
		// A reply that did not stream (a non-streaming provider, or one
		// kept for us while we were away) is printed whole.
		if !p.streamed[f.SessionID] {
			fmt.Fprint(p.out, f.Text)
		}
		if f.Interrupted {
			fmt.Fprint(p.out, " [interrupted]")
		}
		fmt.Fprintln(p.out)
		for _, a := range f.Attachments {
			fmt.Fprintf(p.errw, "[%s] %s\n", a.Kind, a.Path)
		}
	case wire.TurnComplete:
		delete(p.streamed, f.SessionID)
		if p.usage {
			fmt.Fprintf(p.errw, "(%d tokens, $%.4f)\n", f.Usage.TotalTokens, f.Usage.CostUSD)
		}
	case wire.Queued:
		fmt.Fprintf(p.errw, "queued #%d\n", f.Position)
	case wire.Status:
		fmt.Fprintf(p.errw, "… %s\n", f.Text)
	case wire.Error:
		fmt.Fprintf(p.errw, "error: %s\n", f.Text)
	case wire.CommandResult:
		fmt.Fprintln(p.errw, f.Text)
	}
}

// frameSession is the session a frame belongs to, "" for frames of none.
func frameSession(m wire.Message) string {
	switch f := m.(type) {
	case wire.Delta:
		return f.SessionID
	case wire.Response:
		return f.SessionID
	case wire.TurnComplete:
		return f.SessionID
	case wire.Status:
		return f.SessionID
	case wire.Queued:
		return f.SessionID
	case wire.Error:
		return f.SessionID
	case wire.CommandResult:
		return f.SessionID
	}
	return ""
}

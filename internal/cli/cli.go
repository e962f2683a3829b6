// Package cli implements agentd's command line: one function per
// subcommand, each with its own flag set and --help.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sort"
	"strings"
)

// Version is set at build time with -ldflags "-X …/cli.Version=v1.2.3";
// otherwise the module's build info is used.
var Version = ""

// AgentVersion returns the version string agentd reports.
func AgentVersion() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

type command struct {
	name    string
	args    string // synopsis of the positional arguments
	summary string
	run     func(fs *flag.FlagSet, args []string) error
	flags   func(fs *flag.FlagSet)
}

// exitError carries a specific exit status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError marks a bad invocation (exit 2, with usage).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

var commands = map[string]*command{}

func register(c *command) { commands[c.name] = c }

var stdout io.Writer = os.Stdout
var stderr io.Writer = os.Stderr

// Main runs agentd with args (without the program name) and returns the
// process exit status.
func Main(args []string) int {
	if len(args) == 0 {
		printHelp(stderr)
		return 2
	}
	name := args[0]
	switch name {
	case "help", "-h", "--help", "-help":
		if len(args) > 1 {
			if c, ok := commands[args[1]]; ok {
				fs := newFlagSet(c)
				fs.SetOutput(stdout)
				fs.Usage()
				return 0
			}
		}
		printHelp(stdout)
		return 0
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "agentd %s\n", AgentVersion())
		return 0
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "agentd: unknown command %q\n\n", name)
		printHelp(stderr)
		return 2
	}
	fs := newFlagSet(c)
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	err = c.run(fs, pos)
	if err == nil {
		return 0
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "agentd %s: %s\n", name, ue.msg)
		fs.Usage()
		return 2
	}
	fmt.Fprintf(stderr, "agentd %s: %v\n", name, err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

func newFlagSet(c *command) *flag.FlagSet {
	fs := flag.NewFlagSet("agentd "+c.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if c.flags != nil {
		c.flags(fs)
	}
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "usage: agentd %s %s\n\n%s\n", c.name, c.args, c.summary)
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintln(out, "\nflags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

func printHelp(w io.Writer) {
	fmt.Fprintf(w, "agentd %s — a self-hosted personal AI agent daemon\n\nusage: agentd <command> [flags] [args]\n\ncommands:\n", AgentVersion())
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := commands[n]
		fmt.Fprintf(w, "  %-8s %s\n", n, firstLine(c.summary))
	}
	fmt.Fprintf(w, "  %-8s %s\n  %-8s %s\n\nRun 'agentd help <command>' or 'agentd <command> --help' for details.\n",
		"version", "print the version", "help", "show this help")
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// oneDir returns the single agent-directory argument.
func oneDir(args []string) (string, error) {
	switch len(args) {
	case 0:
		return "", usagef("missing agent directory")
	case 1:
		return args[0], nil
	default:
		return "", usagef("unexpected arguments after %s: %s", args[0], strings.Join(args[1:], " "))
	}
}

// parseInterspersed parses flags anywhere among the positional arguments,
// so "agentd chat DIR -m hi" works as the docs write it. "--" ends flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > 0 && len(rest) < len(args) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

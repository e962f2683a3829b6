package logfile

import (
	"bytes"
	"strings"
	"testing"
)

func TestLinesWholeLinesAndTail(t *testing.T) {
	var log bytes.Buffer
	w := &Lines{Log: &log}
	for _, s := range []string{"one\n", "two", "\n", "\n", "three\nfour\n", "partial"} {
		w.Write([]byte(s))
	}
	if got := w.Tail(); got != "two | three | four" {
		t.Errorf("tail = %q", got)
	}
	if log.String() != "one\ntwo\n\nthree\nfour\n" {
		t.Errorf("log = %q (a partial line is held back)", log.String())
	}
	w.Write([]byte(strings.Repeat("x", maxLine+1)))
	if !strings.HasSuffix(log.String(), "x\n") {
		t.Error("an endless line was not cut")
	}
}

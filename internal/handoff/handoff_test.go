package handoff

import (
	"errors"
	"net"
	"testing"
	"time"
)

func TestPutAccept(t *testing.T) {
	l := New(&net.UnixAddr{Name: "x", Net: "unix"})
	a, b := net.Pipe()
	defer b.Close()
	go l.Put(a)
	c, err := l.Accept()
	if err != nil || c != a {
		t.Fatalf("Accept = %v, %v", c, err)
	}
	if l.Addr().String() != "x" {
		t.Errorf("Addr = %v", l.Addr())
	}
}

func TestCloseEndsAcceptAndPut(t *testing.T) {
	l := New(nil)
	errc := make(chan error, 1)
	go func() { _, err := l.Accept(); errc <- err }()
	time.Sleep(10 * time.Millisecond)
	l.Close()
	l.Close() // idempotent
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close = %v", err)
	}
	a, b := net.Pipe()
	if l.Put(a) {
		t.Fatal("Put on a closed listener succeeded")
	}
	// Put closed a: its peer sees EOF.
	b.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := b.Read(make([]byte, 1)); err == nil {
		t.Fatal("conn handed to a closed listener was not closed")
	}
}

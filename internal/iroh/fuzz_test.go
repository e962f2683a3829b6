package iroh

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzControlLines feeds arbitrary bytes to the Go side of the sidecar
// contract (docs/iroh-sidecar.md): the header line of an accepted stream
// and the reply line of a dial. Nothing may panic; an accepted header names
// a well-formed NodeId and ALPN, and the stream bytes after the line reach
// the reader unchanged (none lost, none invented); every failed dial reply
// maps to one of the documented errors.
func FuzzControlLines(f *testing.F) {
	node := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, s := range []string{
		`{"remote_node_id":"` + node + `","alpn":"openagent/gateway/1"}` + "\n\x00\x00\x01\x00cert",
		`{"remote_node_id":"` + node + `","alpn":"openagent/coordinator/1","extra":1}` + "\n",
		`{"remote_node_id":"` + node[:63] + `G","alpn":"x"}` + "\n",
		`{"ok":true}` + "\nHTTP/1.1 200 OK\r\n",
		`{"ok":false,"code":"timeout","error":"timeout: no connection"}` + "\n",
		`{"ok":false,"code":"alpn_refused","error":"x"}` + "\n",
		`{}` + "\n",
		"\n",
		`{"remote_node_id":` + "\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), maxHeaderLine)
		if h, err := readHeader(br); err == nil {
			if !isNodeID(h.RemoteNodeID) || h.ALPN == "" || len(h.ALPN) > 255 {
				t.Fatalf("accepted a bad header %+v", h)
			}
			// A Conn hands out br's buffered bytes, then the socket's: here
			// both are br.
			rest, _ := io.ReadAll(br)
			nl := bytes.IndexByte(data, '\n')
			if want := data[nl+1:]; !bytes.Equal(rest, want) {
				t.Fatalf("stream bytes after the header: got %q, want %q", rest, want)
			}
		}
		br = bufio.NewReaderSize(bytes.NewReader(data), maxHeaderLine)
		if rep, err := readReply(br); err == nil && !rep.OK {
			err := replyError(rep)
			if !(errors.Is(err, ErrTimeout) || errors.Is(err, ErrALPNRefused) || errors.Is(err, ErrBadRequest) || errors.Is(err, ErrUnreachable)) {
				t.Fatalf("reply %+v maps to an undocumented error %v", rep, err)
			}
		}
	})
}

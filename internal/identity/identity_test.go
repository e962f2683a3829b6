package identity

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentd/agentd/devicecert"
)

func enrolled(t *testing.T) *devicecert.Identity {
	t.Helper()
	id, err := devicecert.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	_, coord, _ := ed25519.GenerateKey(nil)
	now := time.Now().Truncate(time.Second)
	id.Cert, err = devicecert.Sign(coord, devicecert.Cert{Handle: "h", DevicePub: id.Public(), NetworkID: "n",
		IssuedAt: now, ExpiresAt: now.Add(time.Hour), Capabilities: []string{"chat"}})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestDefaultPath(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", "/cfg")
	if p, _ := DefaultPath(); p != "/cfg/agentd/identity.json" {
		t.Errorf("DefaultPath = %s", p)
	}
	t.Setenv("XDG_CONFIG_HOME", "relative/ignored")
	t.Setenv("HOME", "/home/u")
	if p, _ := DefaultPath(); p != "/home/u/.config/agentd/identity.json" {
		t.Errorf("DefaultPath with a relative XDG_CONFIG_HOME = %s", p)
	}
	if AgentPath("/x/identity.json") != "/x/identity.agent.json" || AgentPath("/x/me") != "/x/me.agent.json" {
		t.Error("AgentPath")
	}
}

func TestSaveLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "agentd")
	path := filepath.Join(dir, "identity.json")
	id := enrolled(t)
	agent := &Agent{Name: "a", NetworkID: "n", NodeID: strings.Repeat("0f", 32), Addrs: []string{"127.0.0.1:1"}}
	if err := Save(path, id, agent); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v", fi.Mode().Perm())
	}
	gotID, gotAgent, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if gotID.ClientID() != id.ClientID() || gotAgent.NodeID != agent.NodeID || gotAgent.NodeAddr().Addrs[0] != "127.0.0.1:1" {
		t.Fatalf("loaded %v %+v", gotID.ClientID(), gotAgent)
	}

	for _, tc := range []struct {
		name    string
		breakIt func(t *testing.T, path string)
		want    string
	}{
		{"missing identity", func(t *testing.T, p string) { os.Remove(p) }, "enroll it first"},
		{"identity readable by others", func(t *testing.T, p string) { os.Chmod(p, 0o644) }, "chmod 600"},
		{"agent record readable by others", func(t *testing.T, p string) { os.Chmod(AgentPath(p), 0o644) }, "chmod 600"},
		{"agent record missing", func(t *testing.T, p string) { os.Remove(AgentPath(p)) }, "load agent record"},
		{"bad node id", func(t *testing.T, p string) {
			os.WriteFile(AgentPath(p), []byte(`{"node_id":"xyz"}`), 0o600)
		}, "64 hex"},
		{"no certificate", func(t *testing.T, p string) {
			(&devicecert.Identity{Key: id.Key}).Save(p)
		}, "no certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "id.json")
			if err := Save(p, id, agent); err != nil {
				t.Fatal(err)
			}
			tc.breakIt(t, p)
			_, _, err := Load(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if tc.name == "missing identity" && !errors.Is(err, ErrNotEnrolled) {
				t.Errorf("not ErrNotEnrolled: %v", err)
			}
		})
	}
	if _, err := ParseNodeID(" " + strings.Repeat("AB", 32) + " "); err != nil {
		t.Errorf("ParseNodeID upper case: %v", err)
	}
	if err := Save(path, id, &Agent{NodeID: "short"}); err == nil {
		t.Error("Save accepted a bad node id")
	}
}

package ctl

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKeySources: the key is taken from --key, else --key-file, else FUSTOR_KEY, and sent as
// a bearer token; a key file's trailing newline is not part of the key.
func TestKeySources(t *testing.T) {
	s, addr := startServer(t, "demo")
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyFile := filepath.Join(dir, "empty")
	if err := os.WriteFile(emptyFile, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  string // FUSTOR_KEY
		args []string
		code int
		sent string // the authorization metadata sent
		err  string // stderr, when the call fails
	}{
		{"FUSTOR_KEY", "from-env", nil, 0, "Bearer from-env", ""},
		{"--key-file", "", []string{"--key-file", keyFile}, 0, "Bearer from-file", ""},
		{"--key-file over FUSTOR_KEY", "from-env", []string{"--key-file", keyFile}, 0, "Bearer from-file", ""},
		{"--key over --key-file and FUSTOR_KEY", "from-env", []string{"--key", "from-flag", "--key-file", keyFile}, 0, "Bearer from-flag", ""},
		{"--key-file missing", "from-env", []string{"--key-file", filepath.Join(dir, "gone")}, 2, "", "read --key-file: open " + filepath.Join(dir, "gone")},
		{"--key-file empty", "", []string{"--key-file", emptyFile}, 2, "", "--key-file " + emptyFile + " is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.mu.Lock()
			s.keys = nil
			s.mu.Unlock()
			env := func(k string) string {
				if k == "FUSTOR_KEY" {
					return tt.env
				}
				return ""
			}
			var out, errOut bytes.Buffer
			args := append([]string{"--server", addr}, tt.args...)
			code := Run(context.Background(), append(args, "stats", "/"), &out, &errOut, env)
			if code != tt.code {
				t.Fatalf("exit %d; want %d (stderr %q)", code, tt.code, errOut.String())
			}
			if tt.err != "" {
				if !strings.Contains(errOut.String(), tt.err) {
					t.Fatalf("stderr %q; want %q", errOut.String(), tt.err)
				}
				return
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if len(s.keys) == 0 {
				t.Fatal("no call reached the server")
			}
			for _, k := range s.keys {
				if k != tt.sent {
					t.Fatalf("key sent as %q; want %q", k, tt.sent)
				}
			}
		})
	}
}

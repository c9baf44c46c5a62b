package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKeyForms: every key setting accepts a literal, sha256:, env: and file:, and Validate
// names the setting when one cannot be resolved, never quoting a key.
func TestKeyForms(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "file-key \n\n")
	empty := write("empty", " \n")
	missing := filepath.Join(dir, "missing")
	t.Setenv("FUSTOR_TEST_KEY", "env-key")
	t.Setenv("FUSTOR_TEST_EMPTY", "")
	digest := sha256.Sum256([]byte("hashed-key"))
	hashed := "sha256:" + hex.EncodeToString(digest[:])

	tests := []struct {
		name    string
		setting string
		key     string // the key it resolves to ("" = an error)
		wantErr string
	}{
		{"literal", "plain-key", "plain-key", ""},
		{"sha256", hashed, "hashed-key", ""},
		{"sha256 upper case", "sha256:" + strings.ToUpper(hex.EncodeToString(digest[:])), "hashed-key", ""},
		{"env", "env:FUSTOR_TEST_KEY", "env-key", ""},
		{"file, trailing whitespace trimmed", "file:" + good, "file-key", ""},
		{"empty", "", "", "empty key"},
		{"sha256 too short", "sha256:abcd", "", "sha256: wants 64 hex digits"},
		{"sha256 not hex", "sha256:" + strings.Repeat("zz", 32), "", "sha256: wants 64 hex digits"},
		{"sha256 too long", hashed + "00", "", "sha256: wants 64 hex digits"},
		{"env unset", "env:FUSTOR_TEST_UNSET", "", "environment variable FUSTOR_TEST_UNSET is not set"},
		{"env empty", "env:FUSTOR_TEST_EMPTY", "", "environment variable FUSTOR_TEST_EMPTY is empty"},
		{"env without a name", "env:", "", "env: names no environment variable"},
		{"file missing", "file:" + missing, "", "read key file: open " + missing},
		{"file empty", "file:" + empty, "", "key file " + empty + " is empty"},
		{"file without a path", "file:", "", "file: names no file"},
	}
	settings := []struct {
		where string
		set   func(c *Config, s string)
	}{
		{"receivers.default.api_keys[0].key", func(c *Config, s string) {
			c.Receivers["default"] = Receiver{APIKeys: []APIKey{{Key: s, Pipe: "demo"}}}
		}},
		{"views.demo.query_keys[1]", func(c *Config, s string) {
			v := c.Views["demo"]
			v.QueryKeys = []string{"other-key", s}
			c.Views["demo"] = v
		}},
		{"server.admin_keys[0]", func(c *Config, s string) { c.Server.AdminKeys = []string{s} }},
	}
	for _, st := range settings {
		for _, tt := range tests {
			t.Run(st.where+"/"+tt.name, func(t *testing.T) {
				c := Demo()
				st.set(&c, tt.setting)
				err := c.Validate()
				if tt.wantErr != "" {
					// An empty api_keys entry is reported as the entry, not its key setting.
					where := st.where
					if tt.setting == "" && strings.HasSuffix(where, ".key") {
						where = strings.TrimSuffix(where, ".key")
					}
					if err == nil || !strings.Contains(err.Error(), where+": "+tt.wantErr) {
						t.Fatalf("Validate() = %v; want %q", err, where+": "+tt.wantErr)
					}
					if _, err := c.Keys(); err == nil {
						t.Fatal("Keys() accepted what Validate refused")
					}
					return
				}
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				ks, err := c.Keys()
				if err != nil {
					t.Fatal(err)
				}
				d := KeyDigest(tt.key)
				var ok bool
				switch {
				case strings.HasPrefix(st.where, "receivers"):
					ok = ks.Ingest[d] == "demo"
				case strings.HasPrefix(st.where, "views"):
					ok = ks.Query[d]["demo"] && ks.Query[KeyDigest("other-key")]["demo"]
				default:
					ok = ks.Admin[d]
				}
				if !ok {
					t.Fatalf("key %q is not in %+v", tt.key, ks)
				}
			})
		}
	}
}

func TestAPIKeyFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "ingest")
	if err := os.WriteFile(p, []byte("ingest-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		key  APIKey
		want string // "" = valid
	}{
		{"key_file", APIKey{KeyFile: p, Pipe: "demo"}, ""},
		{"both", APIKey{Key: "k", KeyFile: p, Pipe: "demo"}, "receivers.default.api_keys[0]: both key and key_file are set: set one"},
		{"neither", APIKey{Pipe: "demo"}, "receivers.default.api_keys[0]: empty key: set key or key_file"},
		{"key_file missing", APIKey{KeyFile: p + ".gone", Pipe: "demo"}, "receivers.default.api_keys[0].key_file: read key file: open " + p + ".gone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Demo()
			c.Receivers["default"] = Receiver{APIKeys: []APIKey{tt.key}}
			err := c.Validate()
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("Validate() = %v; want %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ks, _ := c.Keys()
			if ks.Ingest[KeyDigest("ingest-from-file")] != "demo" {
				t.Fatalf("the key file's key is not an ingest key: %+v", ks)
			}
		})
	}
}

// TestDuplicateIngestKeyAcrossForms: one key given twice, once as itself and once as its
// digest, routes to one pipe only.
func TestDuplicateIngestKeyAcrossForms(t *testing.T) {
	c := Demo()
	d := KeyDigest("demo-ingest-key")
	c.Receivers["default"] = Receiver{APIKeys: []APIKey{{Key: "demo-ingest-key", Pipe: "demo"}, {Key: "sha256:" + hex.EncodeToString(d[:]), Pipe: "demo"}}}
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "receivers.default.api_keys[1].key: key already used by receivers.default.api_keys[0].key") {
		t.Fatalf("Validate() = %v", err)
	}
}

// TestKeysReadAgain: env: and file: are read at each resolution, so a reload sees a rotated key.
func TestKeysReadAgain(t *testing.T) {
	p := filepath.Join(t.TempDir(), "admin")
	if err := os.WriteFile(p, []byte("first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Demo()
	c.Server.AdminKeys = []string{"file:" + p}
	ks, err := c.Keys()
	if err != nil || !ks.Admin[KeyDigest("first")] {
		t.Fatalf("Keys() = %+v, %v", ks, err)
	}
	if err := os.WriteFile(p, []byte("second\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ks, err = c.Keys()
	if err != nil || !ks.Admin[KeyDigest("second")] || ks.Admin[KeyDigest("first")] {
		t.Fatalf("Keys() after the file changed = %+v, %v", ks, err)
	}
}

func TestReadKey(t *testing.T) {
	t.Setenv("FUSTOR_TEST_KEY", "env-key")
	if k, err := ReadKey("env:FUSTOR_TEST_KEY"); err != nil || k != "env-key" {
		t.Fatalf("ReadKey(env:) = %q, %v", k, err)
	}
	d := KeyDigest("x")
	if _, err := ReadKey("sha256:" + hex.EncodeToString(d[:])); !errors.Is(err, ErrDigestOnly) {
		t.Fatalf("ReadKey(sha256:) = %v; want ErrDigestOnly", err)
	}
	// An error never carries the key: a key mistaken for a digest stays out of logs.
	if _, err := ReadKey("sha256:my-secret-key"); err == nil || strings.Contains(err.Error(), "my-secret-key") {
		t.Fatalf("ReadKey(bad sha256:) = %v", err)
	}
}

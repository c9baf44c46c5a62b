package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAdminKey: reload sends the first admin key it can read; a sha256: setting cannot be sent.
func TestAdminKey(t *testing.T) {
	file := filepath.Join(t.TempDir(), "admin.key")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FUSTOR_TEST_ADMIN_KEY", "from-env")
	d := sha256.Sum256([]byte("x"))
	hashed := "sha256:" + hex.EncodeToString(d[:])
	tests := []struct {
		name     string
		settings []string
		want     string
		err      string
	}{
		{"none", nil, "", ""},
		{"literal", []string{"lit"}, "lit", ""},
		{"after a digest, a file", []string{hashed, "file:" + file}, "from-file", ""},
		{"env", []string{"env:FUSTOR_TEST_ADMIN_KEY"}, "from-env", ""},
		{"an unreadable one, then a literal", []string{"env:FUSTOR_TEST_UNSET", "lit"}, "lit", ""},
		{"only digests", []string{hashed}, "", "server.admin_keys holds only sha256: digests; give --key"},
		{"only unreadable", []string{hashed, "env:FUSTOR_TEST_UNSET"}, "", "read server.admin_keys[1]: environment variable FUSTOR_TEST_UNSET is not set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := adminKey(tt.settings)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("adminKey = %q, %v; want error %q", k, err, tt.err)
				}
				return
			}
			if err != nil || k != tt.want {
				t.Fatalf("adminKey = %q, %v; want %q", k, err, tt.want)
			}
		})
	}
}

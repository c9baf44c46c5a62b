package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMainExitCodes(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("pipes:\n  p: {receiver: nope, views: [x]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		env     []string
		code    int
		message string
	}{
		{"help", []string{"--help"}, nil, 0, "Usage: fustor-fusion"},
		{"unknown flag", []string{"--nope"}, nil, 2, "unknown flag"},
		{"missing config file", []string{"--config", filepath.Join(dir, "none.yaml")}, nil, 2, "read config"},
		{"invalid config from FUSTOR_CONFIG", nil, []string{"FUSTOR_CONFIG=" + bad}, 1, `unknown receiver`},
		{"bad log level", []string{"--log.level", "loud"}, nil, 2, "log level"},
		{"validate an invalid config", []string{"--validate", "--config", bad}, nil, 1, "the configuration is invalid"},
		{"validate the demo", []string{"--validate", "--demo"}, nil, 0, "the configuration is valid (1 views, 1 pipes)"},
		{"reload with nothing listening", []string{"reload", "--server", "127.0.0.1:1", "--key", "k", "--timeout", "2s"}, nil, 1, "fustor-fusion reload: Unavailable"},
		{"reload with a certificate and no key", []string{"reload", "--server", "127.0.0.1:1", "--key", "k", "--cert", bad}, nil, 2, "a certificate file and a key file are both needed"},
		{"reload an unreadable config", []string{"reload", "--config", filepath.Join(dir, "none.yaml")}, nil, 2, "read config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := Main(tt.args, tt.env, &stderr)
			if code != tt.code || !strings.Contains(stderr.String(), tt.message) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr.String(), tt.code, tt.message)
			}
		})
	}
}

package config

import (
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestValidate(t *testing.T) {
	root := t.TempDir()
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"demo is valid", func(*Config) {}, ""},
		{"missing root", func(c *Config) { s := c.Sources["demo"]; s.Root = root + "/nope"; c.Sources["demo"] = s }, "not a readable directory"},
		{"unknown sender", func(c *Config) { p := c.Pipes["demo"]; p.Sender = "x"; c.Pipes["demo"] = p }, `unknown sender "x"`},
		{"batch size", func(c *Config) { p := c.Pipes["demo"]; p.BatchSize = -1; c.Pipes["demo"] = p }, "batch_size"},
		{"no address", func(c *Config) { s := c.Senders["fusion"]; s.Address = ""; c.Senders["fusion"] = s }, "address is required"},
		{"metrics address", func(c *Config) { c.MetricsListen = "localhost" }, `metrics_listen "localhost"`},
		{"metrics address set", func(c *Config) { c.MetricsListen = "127.0.0.1:0" }, ""},
		{"pair used twice", func(c *Config) { c.Pipes["other"] = c.Pipes["demo"] }, "already paired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Demo(root)
			tt.mutate(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v; want %q", err, tt.want)
			}
		})
	}
}

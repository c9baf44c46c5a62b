package config

import (
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDemoValidates(t *testing.T) {
	c := Demo()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"bad listen", func(c *Config) { c.Server.Listen = "nope" }, "server.listen"},
		{"unknown view", func(c *Config) { p := c.Pipes["demo"]; p.Views = []string{"x"}; c.Pipes["demo"] = p }, `unknown view "x"`},
		{"unknown pipe of key", func(c *Config) {
			c.Receivers["default"] = Receiver{APIKeys: []APIKey{{Key: "k", Pipe: "nope"}}}
		}, `unknown pipe "nope"`},
		{"empty key", func(c *Config) {
			c.Receivers["default"] = Receiver{APIKeys: []APIKey{{Key: "", Pipe: "demo"}}}
		}, "empty key"},
		{"bad driver", func(c *Config) { v := c.Views["demo"]; v.Driver = "sql"; c.Views["demo"] = v }, "unknown driver"},
		{"short timeout", func(c *Config) { p := c.Pipes["demo"]; p.SessionTimeout = 1; c.Pipes["demo"] = p }, "session_timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Demo()
			tt.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v; want %q", err, tt.want)
			}
		})
	}
}

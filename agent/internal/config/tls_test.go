package config

import (
	"strings"
	"testing"

	"github.com/fustor/fustor/sdk/tlsfiles/tlstest"
)

func TestValidateSenderTLS(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "ca")
	caFile := ca.WriteCA(t, dir, "ca")
	cert, key := ca.Client(t, "agent").Write(t, dir, "agent")
	_, otherKey := ca.Client(t, "other").Write(t, dir, "other")
	tests := []struct {
		name string
		tls  SenderTLS
		want string // a part of the error; empty: valid
	}{
		{"off", SenderTLS{}, ""},
		{"system roots", SenderTLS{Enabled: true}, ""},
		{"private ca", SenderTLS{Enabled: true, CAFile: caFile, ServerName: "fusion.example"}, ""},
		{"mutual", SenderTLS{Enabled: true, CAFile: caFile, CertFile: cert, KeyFile: key}, ""},
		{"files but off", SenderTLS{CAFile: caFile}, "tls.enabled is false"},
		{"cert without key", SenderTLS{Enabled: true, CertFile: cert}, "a certificate file and a key file are both needed"},
		{"key of another cert", SenderTLS{Enabled: true, CertFile: cert, KeyFile: otherKey}, "senders.fusion.tls: load certificate"},
		{"missing ca", SenderTLS{Enabled: true, CAFile: dir + "/nope"}, "read ca bundle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Demo(t.TempDir())
			s := c.Senders["fusion"]
			s.TLS = tt.tls
			c.Senders["fusion"] = s
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate = %v; want an error with %q", err, tt.want)
			}
		})
	}
}

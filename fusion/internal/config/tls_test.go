package config

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/fustor/fustor/sdk/tlsfiles/tlstest"
)

func TestValidateTLS(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "ca")
	cert, key := ca.Server(t, "127.0.0.1").Write(t, dir, "server")
	_, otherKey := ca.Server(t, "127.0.0.1").Write(t, dir, "other")
	caFile := ca.WriteCA(t, dir, "ca")
	garbage := filepath.Join(dir, "garbage.pem")
	tlstest.WriteFile(t, garbage, []byte("not pem"))
	tests := []struct {
		name string
		tls  TLS
		// want is a part of the error; empty: valid.
		want string
		// auth is client_auth after Normalize, when valid.
		auth string
	}{
		{"off", TLS{}, "", ""},
		{"server only", TLS{CertFile: cert, KeyFile: key}, "", ClientAuthNone},
		{"mtls defaults to verify_if_given", TLS{CertFile: cert, KeyFile: key, ClientCAFile: caFile}, "", ClientAuthVerifyIfGiven},
		{"mtls required", TLS{CertFile: cert, KeyFile: key, ClientCAFile: caFile, ClientAuth: ClientAuthRequire}, "", ClientAuthRequire},
		{"ingest needs certs", TLS{CertFile: cert, KeyFile: key, ClientCAFile: caFile, RequireClientCertForIngest: true}, "", ClientAuthVerifyIfGiven},
		{"cert without key", TLS{CertFile: cert}, "cert_file and key_file are both needed", ""},
		{"key without cert", TLS{KeyFile: key}, "cert_file and key_file are both needed", ""},
		{"key of another cert", TLS{CertFile: cert, KeyFile: otherKey}, "server.tls: load certificate", ""},
		{"missing cert", TLS{CertFile: filepath.Join(dir, "nope.crt"), KeyFile: key}, "server.tls: stat certificate", ""},
		{"client ca without tls", TLS{ClientCAFile: caFile}, "need cert_file and key_file", ""},
		{"ingest certs without tls", TLS{RequireClientCertForIngest: true}, "need cert_file and key_file", ""},
		{"client ca with auth none", TLS{CertFile: cert, KeyFile: key, ClientCAFile: caFile, ClientAuth: ClientAuthNone}, "client_auth is none", ""},
		{"ingest certs with auth none", TLS{CertFile: cert, KeyFile: key, ClientAuth: ClientAuthNone, RequireClientCertForIngest: true}, "require_client_cert_for_ingest needs client_ca_file", ""},
		{"require without ca", TLS{CertFile: cert, KeyFile: key, ClientAuth: ClientAuthRequire}, "client_auth require needs client_ca_file", ""},
		{"unknown auth", TLS{CertFile: cert, KeyFile: key, ClientCAFile: caFile, ClientAuth: "always"}, `unknown client_auth "always"`, ""},
		{"ca bundle without certificates", TLS{CertFile: cert, KeyFile: key, ClientCAFile: garbage}, "client_ca_file: read ca bundle", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Demo()
			c.Server.TLS = tt.tls
			c.Normalize()
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate = %v; want an error with %q", err, tt.want)
			case tt.want == "" && c.Server.TLS.ClientAuth != tt.auth:
				t.Fatalf("client_auth = %q; want %q", c.Server.TLS.ClientAuth, tt.auth)
			}
		})
	}
}

func TestValidateServerConnection(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Server)
		want   string
	}{
		{"negative streams", func(s *Server) { s.MaxConcurrentStreams = -1 }, "server.max_concurrent_streams"},
		{"negative idle", func(s *Server) { s.MaxConnectionIdle = -1 }, "cannot be negative"},
		{"ping too often", func(s *Server) { s.KeepaliveTime = 1 }, "keepalive_time must be at least 1s"},
	}
	for _, tt := range tests {
		c := Demo()
		tt.mutate(&c.Server)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate = %v; want %q", tt.name, err, tt.want)
		}
	}
	c := Default()
	c.Normalize()
	if c.Server.MaxConcurrentStreams != DefaultMaxConcurrentStreams || c.Server.KeepaliveTime != DefaultKeepaliveTime ||
		c.Server.KeepaliveTimeout != DefaultKeepaliveTimeout || c.Server.MaxConnectionIdle != DefaultMaxConnectionIdle {
		t.Fatalf("Normalize left %+v", c.Server)
	}
}

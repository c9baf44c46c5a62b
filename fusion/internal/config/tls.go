package config

import (
	"errors"
	"fmt"
	"time"

	"github.com/fustor/fustor/sdk/tlsfiles"
)

// Client authentication modes of server.tls.client_auth.
const (
	// ClientAuthNone asks no client certificate.
	ClientAuthNone = "none"
	// ClientAuthVerifyIfGiven verifies a client certificate when one is sent: a client without
	// one connects (queries), and require_client_cert_for_ingest can still demand one of the
	// agents.
	ClientAuthVerifyIfGiven = "verify_if_given"
	// ClientAuthRequire refuses, at the handshake, every client without a valid certificate.
	ClientAuthRequire = "require"
)

// TLS secures Fusion's gRPC listener. It is off while CertFile is empty: the listener is then
// plaintext, and Fusion warns when that listener is not on loopback. The files are read again
// when they change (at most once a second, on a handshake), so a rotated certificate or CA
// bundle takes effect without a restart; a change that does not load keeps the previous files
// in force and is logged.
type TLS struct {
	// CertFile and KeyFile are the server's certificate (chain, PEM) and private key.
	CertFile string `koanf:"cert_file"`
	KeyFile  string `koanf:"key_file"`
	// ClientCAFile is the PEM bundle of CAs that client certificates must chain to (mutual TLS).
	ClientCAFile string `koanf:"client_ca_file"`
	// ClientAuth is ClientAuthNone, ClientAuthVerifyIfGiven or ClientAuthRequire; empty means
	// verify_if_given when ClientCAFile is set, else none.
	ClientAuth string `koanf:"client_auth"`
	// RequireClientCertForIngest makes SessionService and PushService (the agents' ingest)
	// answer UNAUTHENTICATED to a caller without a verified client certificate, while queries
	// and admin calls may come without one.
	RequireClientCertForIngest bool `koanf:"require_client_cert_for_ingest"`
}

// Enabled reports whether the listener uses TLS.
func (t TLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// Server connection defaults, applied by Normalize to settings left zero. Keepalive follows
// etcd: the server pings a connection silent for KeepaliveTime and closes it when no answer
// comes within KeepaliveTimeout (a peer gone without a FIN), and closes a connection with no
// call for MaxConnectionIdle (clients reconnect by themselves).
const (
	DefaultMaxConcurrentStreams = 1024
	DefaultKeepaliveTime        = 2 * time.Minute
	DefaultKeepaliveTimeout     = 20 * time.Second
	DefaultMaxConnectionIdle    = 30 * time.Minute
	// KeepaliveMinTime is the shortest ping interval a client may use (the agents ping every
	// 20 s); a client pinging more often is sent GOAWAY.
	KeepaliveMinTime = 5 * time.Second
)

// normalizeServerConn fills the connection settings left zero.
func (s *Server) normalizeServerConn() {
	if s.MaxConcurrentStreams == 0 {
		s.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if s.KeepaliveTime == 0 {
		s.KeepaliveTime = DefaultKeepaliveTime
	}
	if s.KeepaliveTimeout == 0 {
		s.KeepaliveTimeout = DefaultKeepaliveTimeout
	}
	if s.MaxConnectionIdle == 0 {
		s.MaxConnectionIdle = DefaultMaxConnectionIdle
	}
	if s.TLS.ClientAuth == "" && s.TLS.Enabled() {
		s.TLS.ClientAuth = ClientAuthNone
		if s.TLS.ClientCAFile != "" {
			s.TLS.ClientAuth = ClientAuthVerifyIfGiven
		}
	}
}

// validateServerConn checks the connection and TLS settings; the TLS files are loaded, so that
// --validate and a reload refuse a certificate that cannot be used.
func (s *Server) validateServerConn() []error {
	var errs []error
	if s.MaxConcurrentStreams < 0 || s.MaxConcurrentStreams > 1<<31-1 {
		errs = append(errs, errors.New("server.max_concurrent_streams must be between 1 and 2147483647 (0 = the default)"))
	}
	if s.KeepaliveTime < 0 || s.KeepaliveTimeout < 0 || s.MaxConnectionIdle < 0 {
		errs = append(errs, errors.New("server.keepalive_time, keepalive_timeout and max_connection_idle cannot be negative"))
	}
	if s.KeepaliveTime > 0 && s.KeepaliveTime < time.Second {
		errs = append(errs, errors.New("server.keepalive_time must be at least 1s"))
	}
	return append(errs, s.TLS.validate()...)
}

func (t TLS) validate() []error {
	if !t.Enabled() {
		if t.ClientCAFile != "" || (t.ClientAuth != "" && t.ClientAuth != ClientAuthNone) || t.RequireClientCertForIngest {
			return []error{errors.New("server.tls: client_ca_file, client_auth and require_client_cert_for_ingest need cert_file and key_file (TLS on)")}
		}
		return nil
	}
	var errs []error
	switch t.ClientAuth {
	case "", ClientAuthNone:
		if t.ClientCAFile != "" {
			errs = append(errs, fmt.Errorf("server.tls: client_ca_file is set but client_auth is %s: set client_auth %s or %s", ClientAuthNone, ClientAuthVerifyIfGiven, ClientAuthRequire))
		}
		if t.RequireClientCertForIngest {
			errs = append(errs, fmt.Errorf("server.tls: require_client_cert_for_ingest needs client_ca_file and client_auth %s or %s", ClientAuthVerifyIfGiven, ClientAuthRequire))
		}
	case ClientAuthVerifyIfGiven, ClientAuthRequire:
		if t.ClientCAFile == "" {
			errs = append(errs, fmt.Errorf("server.tls: client_auth %s needs client_ca_file", t.ClientAuth))
		}
	default:
		errs = append(errs, fmt.Errorf("server.tls: unknown client_auth %q (want %s, %s or %s)", t.ClientAuth, ClientAuthNone, ClientAuthVerifyIfGiven, ClientAuthRequire))
	}
	if t.CertFile == "" || t.KeyFile == "" {
		errs = append(errs, errors.New("server.tls: cert_file and key_file are both needed"))
	} else if _, err := tlsfiles.LoadPair(t.CertFile, t.KeyFile, nil); err != nil {
		errs = append(errs, fmt.Errorf("server.tls: %w", err))
	}
	if t.ClientCAFile != "" {
		if _, err := tlsfiles.ReadPool(t.ClientCAFile); err != nil {
			errs = append(errs, fmt.Errorf("server.tls.client_ca_file: %w", err))
		}
	}
	return errs
}

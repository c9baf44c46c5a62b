package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"testing"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/fustor/fustor/fusion/internal/config"
	"github.com/fustor/fustor/sdk/tlsfiles"
)

// BenchmarkHandshake is one full TLS handshake on loopback against the listener's
// configuration (static: the certificate fixed in tls.Config; reloading: GetConfigForClient
// with the files looked at, as Fusion serves them).
func BenchmarkHandshake(b *testing.B) {
	p := newPKI(b)
	st, err := newServerTLS(zap.NewNop(), config.TLS{CertFile: p.certFile, KeyFile: p.keyFile})
	if err != nil {
		b.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(p.certFile, p.keyFile)
	if err != nil {
		b.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.ca.Cert)
	for _, bc := range []struct {
		name string
		cfg  *tls.Config
	}{
		{"static", &tls.Config{Certificates: []tls.Certificate{pair}}},
		{"reloading", &tls.Config{GetConfigForClient: st.configForClient}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			lis, err := tls.Listen("tcp", "127.0.0.1:0", bc.cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer lis.Close()
			go func() {
				for {
					c, err := lis.Accept()
					if err != nil {
						return
					}
					go func() { _ = c.(*tls.Conn).Handshake(); _ = c.Close() }()
				}
			}()
			cc := &tls.Config{RootCAs: roots, ServerName: "localhost"}
			for b.Loop() {
				c, err := tls.Dial("tcp", lis.Addr().String(), cc)
				if err != nil {
					b.Fatal(err)
				}
				_ = c.Close()
			}
		})
	}
}

// BenchmarkUnaryCall is one health check on an open connection, plaintext or TLS.
func BenchmarkUnaryCall(b *testing.B) {
	p := newPKI(b)
	clientTLS, err := tlsfiles.Client{CAFile: p.caFile}.Config(nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name   string
		server config.TLS
		client credentials.TransportCredentials
	}{
		{"plaintext", config.TLS{}, insecure.NewCredentials()},
		{"tls", config.TLS{CertFile: p.certFile, KeyFile: p.keyFile}, credentials.NewTLS(clientTLS)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := startServer(b, bc.server, nil)
			conn, err := grpc.NewClient(s.Addr().String(), grpc.WithTransportCredentials(bc.client))
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			h := healthpb.NewHealthClient(conn)
			for b.Loop() {
				if _, err := h.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkConfigForClient is what the reloading listener adds to a handshake: the files'
// check (a clock read; a stat of each at most once a second) and the handshake's tls.Config.
func BenchmarkConfigForClient(b *testing.B) {
	p := newPKI(b)
	st, err := newServerTLS(zap.NewNop(), config.TLS{CertFile: p.certFile, KeyFile: p.keyFile, ClientCAFile: p.caFile, ClientAuth: config.ClientAuthVerifyIfGiven})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		c, err := st.configForClient(nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.GetCertificate(nil); err != nil {
			b.Fatal(err)
		}
	}
}

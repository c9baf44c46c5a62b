package grpcsender

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/fustor/fustor/agent/internal/config"
	"github.com/fustor/fustor/agent/internal/sender"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/tlsfiles/tlstest"
)

// TestSenderOverMutualTLS: a server that requires a client certificate of its CA answers the
// sender configured with one, and no sender without it.
func TestSenderOverMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "ca")
	caFile := ca.WriteCA(t, dir, "ca")
	srvLeaf := ca.Server(t, "127.0.0.1")
	cert, key := ca.Client(t, "agent").Write(t, dir, "agent")
	pair, err := tls.X509KeyPair(srvLeaf.CertPEM, srvLeaf.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pair},
		ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert})))
	stub := &fusionStub{err: status.Error(codes.PermissionDenied, "the stub answers")}
	fustorv1.RegisterSessionServiceServer(srv, stub)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	tests := []struct {
		name string
		tls  config.SenderTLS
		want codes.Code // the stub's code when the call got through
	}{
		{"plaintext", config.SenderTLS{}, codes.Unavailable},
		{"tls without a client certificate", config.SenderTLS{Enabled: true, CAFile: caFile}, codes.Unavailable},
		{"tls with the system roots", config.SenderTLS{Enabled: true, CertFile: cert, KeyFile: key}, codes.Unavailable},
		{"mutual tls", config.SenderTLS{Enabled: true, CAFile: caFile, CertFile: cert, KeyFile: key}, codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := NewGRPC(config.Sender{Address: lis.Addr().String(), APIKey: "k", TLS: tt.tls}, sender.Backoff{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err = g.Heartbeat(ctx, &fustorv1.HeartbeatRequest{SessionId: "s"})
			if status.Code(err) != tt.want {
				t.Fatalf("heartbeat: %v; want %v", err, tt.want)
			}
		})
	}
	if _, err := NewGRPC(config.Sender{Address: "127.0.0.1:1", APIKey: "k", TLS: config.SenderTLS{Enabled: true, CertFile: cert}}, sender.Backoff{}, nil); err == nil {
		t.Fatal("a sender with a certificate and no key was made")
	}
}

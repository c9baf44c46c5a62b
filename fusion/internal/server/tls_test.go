package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fustor/fustor/fusion/internal/config"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/dial"
	"github.com/fustor/fustor/sdk/tlsfiles"
	"github.com/fustor/fustor/sdk/tlsfiles/tlstest"
)

// pki is a CA, Fusion's certificate and an agent's client certificate, in files.
type pki struct {
	dir                       string
	ca                        *tlstest.CA
	caFile, certFile, keyFile string
	clientCert, clientKey     string
	strangerCert, strangerKey string // a client certificate of another CA
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir(), ca: tlstest.NewCA(t, "fustor test ca")}
	p.caFile = p.ca.WriteCA(t, p.dir, "ca")
	p.certFile, p.keyFile = p.ca.Server(t, "127.0.0.1", "localhost").Write(t, p.dir, "server")
	p.clientCert, p.clientKey = p.ca.Client(t, "agent").Write(t, p.dir, "agent")
	p.strangerCert, p.strangerKey = tlstest.NewCA(t, "other ca").Client(t, "stranger").Write(t, p.dir, "stranger")
	return p
}

// startServer runs a Server on 127.0.0.1:0 with cfg's TLS, the demo keys, the health service
// and SessionService left unimplemented: an ingest call the interceptors let through answers
// UNIMPLEMENTED.
func startServer(t testing.TB, cfg config.TLS, log *zap.Logger) *Server {
	t.Helper()
	c := config.Demo()
	c.Server.Listen = "127.0.0.1:0"
	c.Server.TLS = cfg
	c.Normalize()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	ks, err := c.Keys()
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(log, c.Server, NewKeys(ks), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	fustorv1.RegisterSessionServiceServer(s.GRPC(), fustorv1.UnimplementedSessionServiceServer{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return s
}

// call makes one health check and one ingest call with creds, and returns their errors.
func call(t *testing.T, addr string, creds credentials.TransportCredentials) (health, ingest error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, health = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	ictx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer demo-ingest-key")
	_, ingest = fustorv1.NewSessionServiceClient(conn).CreateSession(ictx, &fustorv1.CreateSessionRequest{})
	return health, ingest
}

func TestTLSListener(t *testing.T) {
	p := newPKI(t)
	creds := func(t *testing.T, c tlsfiles.Client) credentials.TransportCredentials {
		cr, err := dial.TLS{Enabled: true, Client: c}.Credentials(nil)
		if err != nil {
			t.Fatal(err)
		}
		return cr
	}
	verifyIfGiven := config.TLS{CertFile: p.certFile, KeyFile: p.keyFile, ClientCAFile: p.caFile, RequireClientCertForIngest: true}
	require := config.TLS{CertFile: p.certFile, KeyFile: p.keyFile, ClientCAFile: p.caFile, ClientAuth: config.ClientAuthRequire}
	tests := []struct {
		name   string
		server config.TLS
		client func(t *testing.T) credentials.TransportCredentials
		// health and ingest are the codes the two calls answer.
		health, ingest codes.Code
	}{
		{"plaintext server, plaintext client", config.TLS{}, func(*testing.T) credentials.TransportCredentials { return insecure.NewCredentials() }, codes.OK, codes.Unimplemented},
		{"plaintext client on tls", verifyIfGiven, func(*testing.T) credentials.TransportCredentials { return insecure.NewCredentials() }, codes.Unavailable, codes.Unavailable},
		{"system roots do not know the ca", verifyIfGiven, func(t *testing.T) credentials.TransportCredentials { return creds(t, tlsfiles.Client{}) }, codes.Unavailable, codes.Unavailable},
		{"wrong server name", verifyIfGiven, func(t *testing.T) credentials.TransportCredentials {
			return creds(t, tlsfiles.Client{CAFile: p.caFile, ServerName: "fusion.example"})
		}, codes.Unavailable, codes.Unavailable},
		{"tls without client cert: queries yes, ingest no", verifyIfGiven, func(t *testing.T) credentials.TransportCredentials {
			return creds(t, tlsfiles.Client{CAFile: p.caFile})
		}, codes.OK, codes.Unauthenticated},
		{"tls with client cert: ingest too", verifyIfGiven, func(t *testing.T) credentials.TransportCredentials {
			return creds(t, tlsfiles.Client{CAFile: p.caFile, CertFile: p.clientCert, KeyFile: p.clientKey})
		}, codes.OK, codes.Unimplemented},
		{"client cert of another ca", verifyIfGiven, func(t *testing.T) credentials.TransportCredentials {
			return creds(t, tlsfiles.Client{CAFile: p.caFile, CertFile: p.strangerCert, KeyFile: p.strangerKey})
		}, codes.Unavailable, codes.Unavailable},
		{"localhost by name", verifyIfGiven, func(t *testing.T) credentials.TransportCredentials {
			return creds(t, tlsfiles.Client{CAFile: p.caFile, ServerName: "localhost"})
		}, codes.OK, codes.Unauthenticated},
		{"require: no cert, no connection", require, func(t *testing.T) credentials.TransportCredentials {
			return creds(t, tlsfiles.Client{CAFile: p.caFile})
		}, codes.Unavailable, codes.Unavailable},
		{"require: with cert", require, func(t *testing.T) credentials.TransportCredentials {
			return creds(t, tlsfiles.Client{CAFile: p.caFile, CertFile: p.clientCert, KeyFile: p.clientKey})
		}, codes.OK, codes.Unimplemented},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, tt.server, nil)
			health, ingest := call(t, s.Addr().String(), tt.client(t))
			if status.Code(health) != tt.health || status.Code(ingest) != tt.ingest {
				t.Fatalf("health: %v, ingest: %v; want %v, %v", health, ingest, tt.health, tt.ingest)
			}
			if tt.ingest == codes.Unauthenticated && !strings.Contains(status.Convert(ingest).Message(), "client certificate") {
				t.Fatalf("the refusal does not say why: %v", ingest)
			}
		})
	}
}

// TestTLSCertificateRotation rewrites the server's certificate under a running server: new
// handshakes get the new one, with no restart.
func TestTLSCertificateRotation(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, config.TLS{CertFile: p.certFile, KeyFile: p.keyFile}, nil)
	roots := x509.NewCertPool()
	roots.AddCert(p.ca.Cert)
	serial := func() (string, error) {
		c, err := tls.Dial("tcp", s.Addr().String(), &tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: []string{"h2"}})
		if err != nil {
			return "", err
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
	}
	before, err := serial()
	if err != nil {
		t.Fatal(err)
	}
	next := p.ca.Server(t, "127.0.0.1", "localhost")
	next.Write(t, p.dir, "server")
	want := next.Cert.SerialNumber.String()
	if before == want {
		t.Fatal("the new certificate has the old serial")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := serial()
		if err != nil {
			t.Fatal(err)
		}
		if got == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serial %s 10s after the rotation; want %s", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPlaintextWarning(t *testing.T) {
	p := newPKI(t)
	tests := []struct {
		listen string
		tls    config.TLS
		warn   bool
	}{
		{"127.0.0.1:0", config.TLS{}, false},
		{"localhost:0", config.TLS{}, false},
		{"0.0.0.0:0", config.TLS{}, true},
		{"0.0.0.0:0", config.TLS{CertFile: p.certFile, KeyFile: p.keyFile}, false},
	}
	for _, tt := range tests {
		core, logs := observer.New(zap.WarnLevel)
		c := config.Demo()
		c.Server.Listen, c.Server.TLS = tt.listen, tt.tls
		c.Normalize()
		s, err := New(zap.New(core), c.Server, NewKeys(config.KeySet{}), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		if got := logs.FilterMessage(MsgPlaintextListener).Len() == 1; got != tt.warn {
			t.Errorf("listen %s tls %v: warned %v; want %v", tt.listen, tt.tls.Enabled(), got, tt.warn)
		}
	}
}

func TestNewRefusesABadCertificate(t *testing.T) {
	p := newPKI(t)
	c := config.Demo()
	c.Server.Listen = "127.0.0.1:0"
	c.Server.TLS = config.TLS{CertFile: p.certFile, KeyFile: p.clientKey}
	_, err := New(nil, c.Server, NewKeys(config.KeySet{}), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "server.tls") {
		t.Fatalf("New with a key of another certificate: %v", err)
	}
}

package ctl

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/fustor/fustor/sdk/tlsfiles/tlstest"
)

// TestTLSFlags: against a server that requires a client certificate, fustorctl connects with
// --ca-file, --cert and --cert-key (or their variables), and fails without them.
func TestTLSFlags(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "ca")
	caFile := ca.WriteCA(t, dir, "ca")
	leaf := ca.Server(t, "127.0.0.1", "localhost")
	cert, key := ca.Client(t, "operator").Write(t, dir, "operator")
	pair, err := tls.X509KeyPair(leaf.CertPEM, leaf.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert})
	_, addr := startServerWith(t, []grpc.ServerOption{grpc.Creds(creds)}, "demo")
	tests := []struct {
		name string
		args []string
		env  map[string]string
		code int
		err  string // a part of stderr when the call fails
	}{
		{"plaintext", nil, nil, 1, "Unavailable"},
		{"system roots", []string{"--tls"}, nil, 1, "certificate signed by unknown authority"},
		{"ca without client certificate", []string{"--ca-file", caFile}, nil, 1, "Unavailable"},
		{"mutual tls", []string{"--ca-file", caFile, "--cert", cert, "--cert-key", key}, nil, 0, ""},
		{"mutual tls by name", []string{"--ca-file", caFile, "--cert", cert, "--cert-key", key, "--server-name", "localhost"}, nil, 0, ""},
		{"wrong name", []string{"--ca-file", caFile, "--cert", cert, "--cert-key", key, "--server-name", "fusion.example"}, nil, 1, "fusion.example"},
		{"from the environment", nil, map[string]string{"FUSTOR_CA_FILE": caFile, "FUSTOR_CERT": cert, "FUSTOR_CERT_KEY": key}, 0, ""},
		{"certificate without key", []string{"--ca-file", caFile, "--cert", cert}, nil, 2, "a certificate file and a key file are both needed"},
		{"missing ca", []string{"--ca-file", dir + "/nope"}, nil, 2, "read ca bundle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			args := append([]string{"--server", addr, "--key", "k", "--timeout", "5s"}, tt.args...)
			code := Run(context.Background(), append(args, "views"), &out, &errOut, func(k string) string { return tt.env[k] })
			if code != tt.code || !strings.Contains(errOut.String(), tt.err) {
				t.Fatalf("exit %d, stderr %q; want exit %d, stderr with %q", code, errOut.String(), tt.code, tt.err)
			}
			if code == 0 && !strings.Contains(out.String(), "demo") {
				t.Fatalf("views: %q", out.String())
			}
		})
	}
}

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fustor/fustor/sdk/tlsfiles/tlstest"
)

// TestTLSAndMutualTLS runs Fusion with TLS and client certificates required for ingest, with
// certificates made here: a plaintext client is refused, fustorctl with the CA works without a
// client certificate, an agent without one is refused and one with it fills the view, and
// certificate files rotated under the running Fusion are served without a restart.
func TestTLSAndMutualTLS(t *testing.T) {
	root := makeTree(t)
	c := newCluster(t, root)
	pki := t.TempDir()
	ca := tlstest.NewCA(t, "fustor e2e ca")
	caFile := ca.WriteCA(t, pki, "ca")
	certFile, keyFile := ca.Server(t, "127.0.0.1", "localhost").Write(t, pki, "fusion")
	agentCert, agentKey := ca.Client(t, "e2e-agent").Write(t, pki, "agent")
	c.serverTLS = fmt.Sprintf("{cert_file: %s, key_file: %s, client_ca_file: %s, require_client_cert_for_ingest: true}", certFile, keyFile, caFile)
	c.senderTLS = fmt.Sprintf("{enabled: true, ca_file: %s}", caFile) // no client certificate yet
	c.ctlFlags = []string{"--ca-file", caFile}
	c.writeConfigs()
	c.startFusion()

	// A TLS client with the CA and no client certificate may query.
	eventually(t, 30*time.Second, "fustorctl over TLS lists the views", func() error {
		_, err := c.ctl("views")
		return err
	})
	// A plaintext client, or one that does not know the CA, gets no answer.
	for _, flags := range [][]string{nil, {"--tls"}} {
		c.ctlFlags = flags
		if _, err := c.ctl("views"); err == nil || !strings.Contains(err.Error(), "Unavailable") {
			t.Fatalf("fustorctl %v against the TLS listener: %v; want it refused", flags, err)
		}
	}
	c.ctlFlags = []string{"--ca-file", caFile}
	// grpcurl as the README shows it: reflection over TLS with the CA.
	out, err := grpcurl(t, "-cacert", caFile, c.addr, "list")
	if err != nil || !strings.Contains(out, "fustor.v1.ViewService") {
		t.Fatalf("grpcurl -cacert list: %v\n%s", err, out)
	}
	if out, err := grpcurl(t, "-plaintext", c.addr, "list"); err == nil {
		t.Fatalf("grpcurl -plaintext against the TLS listener answered:\n%s", out)
	}

	// An agent without a client certificate is refused, saying why; the view stays empty.
	c.startAgent()
	eventually(t, 30*time.Second, "the agent without a client certificate is refused", func() error {
		if !strings.Contains(c.agent.output(), "needs a verified client certificate") {
			return errNotYet
		}
		return nil
	})
	if n, err := c.fileCount("/"); err == nil {
		t.Fatalf("the view answers %d files with no agent let in", n)
	}

	// With its certificate (a reload of the agent's configuration) it is let in.
	c.senderTLS = fmt.Sprintf("{enabled: true, ca_file: %s, cert_file: %s, key_file: %s, server_name: localhost}", caFile, agentCert, agentKey)
	c.writeConfigs()
	must(t, c.agent.cmd.Process.Signal(syscall.SIGHUP))
	c.waitViewEqualsTree(90*time.Second, "/")

	// Rotation: a new certificate (same CA, another serial) written over the files is what new
	// handshakes get, with no restart.
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	serial := func() (string, error) {
		conn, err := tls.Dial("tcp", c.addr, &tls.Config{RootCAs: roots, NextProtos: []string{"h2"}})
		if err != nil {
			return "", err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
	}
	before, err := serial()
	must(t, err)
	next := ca.Server(t, "127.0.0.1", "localhost")
	next.Write(t, pki, "fusion")
	want := next.Cert.SerialNumber.String()
	if want == before {
		t.Fatal("the new certificate has the old serial")
	}
	eventually(t, 30*time.Second, "new handshakes get the rotated certificate", func() error {
		got, err := serial()
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("serial %s, want %s", got, want)
		}
		return nil
	})
	// Clients and the agent go on: a change made after the rotation reaches the view.
	must(t, os.WriteFile(filepath.Join(root, "after-rotation.txt"), []byte("rotated"), 0o644))
	c.waitViewEqualsTree(60*time.Second, "/")

	// fustor-fusion reload speaks TLS too (the configuration has server.tls).
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rout, err := exec.CommandContext(ctx, filepath.Join(c.bin, "fustor-fusion"), "reload",
		"--config", filepath.Join(c.cfgDir, "fusion.yaml"), "--ca-file", caFile).CombinedOutput()
	if err != nil || !strings.Contains(string(rout), "nothing changed") {
		t.Fatalf("fustor-fusion reload over TLS: %v\n%s", err, rout)
	}
	if strings.Contains(c.fusion.output(), "plaintext") {
		t.Fatal("Fusion warned of a plaintext listener while serving TLS")
	}
}

package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/fustor/fustor/sdk/tlsfiles/tlstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a test clock the watched files are checked against.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

// serialOf is the serial of a loaded pair's certificate (tls.LoadX509KeyPair parses it).
func serialOf(c *tls.Certificate) string { return c.Leaf.SerialNumber.String() }

func touch(t *testing.T, f string, at time.Time) {
	t.Helper()
	if err := os.Chtimes(f, at, at); err != nil {
		t.Fatal(err)
	}
}

// bump gives the files a modification time of their own: two writes within the kernel's
// timestamp granularity could otherwise look alike.
var bumpAt = time.Now().Add(-time.Hour)

func bump(t *testing.T, files ...string) {
	t.Helper()
	bumpAt = bumpAt.Add(time.Second)
	for _, f := range files {
		touch(t, f, bumpAt)
	}
}

func TestPairReloadsWhenTheFilesChange(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "ca")
	first, second, third := ca.Server(t, "127.0.0.1"), ca.Server(t, "127.0.0.1"), ca.Server(t, "127.0.0.1")
	certFile, keyFile := first.Write(t, dir, "server")
	bump(t, certFile, keyFile)
	core, logs := observer.New(zap.InfoLevel)
	p, err := LoadPair(certFile, keyFile, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Now()}
	p.w.now, p.w.checked = clk.now, clk.t
	steps := []struct {
		name   string
		change func()
		wait   time.Duration
		want   string
		failed int // MsgReloadFailed lines logged so far
	}{
		{"unchanged", func() {}, 2 * CheckEvery, first.Cert.SerialNumber.String(), 0},
		{"rotated, not looked at yet", func() { second.Write(t, dir, "server"); bump(t, certFile, keyFile) }, 0, first.Cert.SerialNumber.String(), 0},
		{"rotated, looked at", func() {}, CheckEvery, second.Cert.SerialNumber.String(), 0},
		// The certificate written before its key: they do not match, the old pair stays.
		{"half written", func() { tlstest.WriteFile(t, certFile, third.CertPEM); bump(t, certFile) }, CheckEvery, second.Cert.SerialNumber.String(), 1},
		{"half written, asked again", func() {}, CheckEvery, second.Cert.SerialNumber.String(), 1},
		{"key follows", func() { tlstest.WriteFile(t, keyFile, third.KeyPEM); bump(t, keyFile) }, CheckEvery, third.Cert.SerialNumber.String(), 1},
		{"garbage", func() { tlstest.WriteFile(t, keyFile, []byte("not a key")); bump(t, keyFile) }, CheckEvery, third.Cert.SerialNumber.String(), 2},
		{"missing", func() { _ = os.Remove(keyFile) }, CheckEvery, third.Cert.SerialNumber.String(), 3},
		{"restored", func() { first.Write(t, dir, "server"); bump(t, certFile, keyFile) }, CheckEvery, first.Cert.SerialNumber.String(), 3},
	}
	for _, s := range steps {
		s.change()
		clk.advance(s.wait)
		got, err := p.GetCertificate(nil)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if serialOf(got) != s.want {
			t.Fatalf("%s: serial %s; want %s", s.name, serialOf(got), s.want)
		}
		if n := logs.FilterMessage(MsgReloadFailed).Len(); n != s.failed {
			t.Fatalf("%s: %d failed reloads logged; want %d", s.name, n, s.failed)
		}
	}
	if logs.FilterMessage(MsgReloaded).Len() != 3 {
		t.Fatalf("reloads logged: %v", logs.FilterMessage(MsgReloaded).All())
	}
}

func TestLoadFailsOnBadFiles(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "ca")
	certFile, keyFile := ca.Server(t, "localhost").Write(t, dir, "server")
	_, otherKey := ca.Server(t, "localhost").Write(t, dir, "other")
	garbage := filepath.Join(dir, "garbage")
	tlstest.WriteFile(t, garbage, []byte("hello"))
	tests := []struct {
		name string
		load func() error
	}{
		{"no key", func() error { _, err := LoadPair(certFile, "", nil); return err }},
		{"missing cert", func() error { _, err := LoadPair(filepath.Join(dir, "nope"), keyFile, nil); return err }},
		{"key of another cert", func() error { _, err := LoadPair(certFile, otherKey, nil); return err }},
		{"pool without certificates", func() error { _, err := LoadPool(garbage, nil); return err }},
		{"pool missing", func() error { _, err := LoadPool(filepath.Join(dir, "nope"), nil); return err }},
		{"client cert without key", func() error { _, err := Client{CertFile: certFile}.Config(nil); return err }},
		{"client bad ca", func() error { _, err := Client{CAFile: garbage}.Config(nil); return err }},
	}
	for _, tt := range tests {
		if err := tt.load(); err == nil {
			t.Errorf("%s: loaded", tt.name)
		}
	}
	if _, err := (Client{CAFile: ca.WriteCA(t, dir, "ca"), CertFile: certFile, KeyFile: keyFile}).Config(nil); err != nil {
		t.Errorf("a good client config: %v", err)
	}
}

func TestPoolReloads(t *testing.T) {
	dir := t.TempDir()
	a, b := tlstest.NewCA(t, "a"), tlstest.NewCA(t, "b")
	f := a.WriteCA(t, dir, "ca")
	bump(t, f)
	p, err := LoadPool(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Now()}
	p.w.now, p.w.checked = clk.now, clk.t
	leafB := b.Client(t, "x")
	verifies := func() bool {
		_, err := leafB.Cert.Verify(x509.VerifyOptions{Roots: p.CertPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		return err == nil
	}
	if verifies() {
		t.Fatal("b's leaf verifies against a")
	}
	tlstest.WriteFile(t, f, append(append([]byte{}, a.PEM...), b.PEM...))
	bump(t, f)
	clk.advance(CheckEvery)
	if !verifies() {
		t.Fatal("b's leaf does not verify after b was added to the bundle")
	}
}

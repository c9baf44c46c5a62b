// Package tlsfiles reads TLS certificates, keys and CA bundles from PEM files and reads them
// again when the files change, so a rotated certificate takes effect on the next handshake
// without a restart. Fusion's listener, the agents' senders and fustorctl share it.
//
// A file is looked at (one stat per file) at most once every CheckEvery, on a handshake; it is
// read again only when its modification time or size changed. A change that does not load — a
// certificate written before its key, a truncated file — keeps the last good one in force, is
// logged once, and is tried again when the files change again.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"
)

// CheckEvery is the most often the files are looked at.
const CheckEvery = time.Second

// Log messages (stable keys).
const (
	MsgReloaded     = "tls files reloaded"
	MsgReloadFailed = "tls files changed but do not load; the previous ones stay in force"
)

// stamp is what a stat says of a file: enough to see it was rewritten.
type stamp struct {
	mod  time.Time
	size int64
}

// watched is a value loaded from files and loaded again when one of them changes.
type watched[T any] struct {
	files []string
	load  func() (T, error)
	log   *zap.Logger
	what  string
	// now is the clock (tests).
	now func() time.Time

	mu      sync.Mutex
	cur     T
	stamps  []stamp
	checked time.Time
	// failed are the stamps of a change that did not load: it is not tried (nor logged)
	// again until the files change again.
	failed []stamp
	// missing is set while a file cannot be stat'ed (logged once).
	missing bool
}

func newWatched[T any](log *zap.Logger, what string, load func() (T, error), files ...string) (*watched[T], error) {
	if log == nil {
		log = zap.NewNop()
	}
	w := &watched[T]{files: files, load: load, log: log, what: what, now: time.Now}
	st, err := w.stat()
	if err != nil {
		return nil, err
	}
	v, err := load()
	if err != nil {
		return nil, err
	}
	w.cur, w.stamps, w.checked = v, st, w.now()
	return w, nil
}

func (w *watched[T]) stat() ([]stamp, error) {
	out := make([]stamp, len(w.files))
	for i, f := range w.files {
		fi, err := os.Stat(f)
		if err != nil {
			return nil, fmt.Errorf("stat %s: %w", w.what, err)
		}
		out[i] = stamp{mod: fi.ModTime(), size: fi.Size()}
	}
	return out, nil
}

func sameStamps(a, b []stamp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].mod.Equal(b[i].mod) || a[i].size != b[i].size {
			return false
		}
	}
	return true
}

// get returns the value in force, loading the files again first if they changed.
func (w *watched[T]) get() T {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	if now.Sub(w.checked) < CheckEvery {
		return w.cur
	}
	w.checked = now
	st, err := w.stat()
	switch {
	case err != nil:
		// A file being replaced (removed, then renamed in) is missing for a moment: keep the
		// old value, say so once.
		if !w.missing {
			w.log.Warn(MsgReloadFailed, zap.String("what", w.what), zap.Strings("files", w.files), zap.Error(err))
			w.missing = true
		}
		return w.cur
	}
	w.missing = false
	switch {
	case sameStamps(st, w.stamps):
		w.failed = nil
		return w.cur
	case w.failed != nil && sameStamps(st, w.failed):
		return w.cur
	}
	v, err := w.load()
	if err != nil {
		w.failed = st
		w.log.Warn(MsgReloadFailed, zap.String("what", w.what), zap.Strings("files", w.files), zap.Error(err))
		return w.cur
	}
	w.cur, w.stamps, w.failed = v, st, nil
	w.log.Info(MsgReloaded, zap.String("what", w.what), zap.Strings("files", w.files))
	return w.cur
}

// Pair is a certificate and its private key.
type Pair struct {
	w *watched[*tls.Certificate]
}

// LoadPair reads the certificate (chain) and key; it fails if they do not load now.
func LoadPair(certFile, keyFile string, log *zap.Logger) (*Pair, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("load certificate: a certificate file and a key file are both needed")
	}
	w, err := newWatched(log, "certificate", func() (*tls.Certificate, error) {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load certificate %s with key %s: %w", certFile, keyFile, err)
		}
		return &c, nil
	}, certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &Pair{w: w}, nil
}

// Certificate returns the certificate in force.
func (p *Pair) Certificate() *tls.Certificate { return p.w.get() }

// GetCertificate is tls.Config.GetCertificate (a server's certificate).
func (p *Pair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return p.Certificate(), nil
}

// GetClientCertificate is tls.Config.GetClientCertificate (a client's certificate).
func (p *Pair) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return p.Certificate(), nil
}

// Pool is a bundle of CA certificates.
type Pool struct {
	w *watched[*x509.CertPool]
}

// LoadPool reads a PEM bundle of CA certificates; it fails if it holds none now.
func LoadPool(file string, log *zap.Logger) (*Pool, error) {
	if file == "" {
		return nil, errors.New("load ca bundle: no file")
	}
	w, err := newWatched(log, "ca bundle", func() (*x509.CertPool, error) { return ReadPool(file) }, file)
	if err != nil {
		return nil, err
	}
	return &Pool{w: w}, nil
}

// CertPool returns the bundle in force.
func (p *Pool) CertPool() *x509.CertPool { return p.w.get() }

// ReadPool reads a PEM bundle of CA certificates once.
func ReadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read ca bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("read ca bundle %s: no PEM certificate in it", file)
	}
	return pool, nil
}

// Client is a client's TLS settings: the CA bundle that verifies the server (empty: the
// system roots), an optional client certificate and key (mutual TLS), and the name the
// server's certificate must carry (empty: the host dialled).
type Client struct {
	CAFile, CertFile, KeyFile, ServerName string
}

// Config returns the client's tls.Config. The CA bundle is read now; the client certificate
// is read again when its files change (a long-running agent rotates it without a restart).
func (c Client) Config(log *zap.Logger) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CAFile != "" {
		pool, err := ReadPool(c.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	switch {
	case c.CertFile != "" && c.KeyFile != "":
		pair, err := LoadPair(c.CertFile, c.KeyFile, log)
		if err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = pair.GetClientCertificate
	case c.CertFile != "" || c.KeyFile != "":
		return nil, errors.New("client certificate: a certificate file and a key file are both needed")
	}
	return cfg, nil
}

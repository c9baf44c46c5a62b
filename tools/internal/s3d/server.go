// Package s3d is fustor-s3d: an S3-protocol server (gofakes3's HTTP layer over Store, in
// memory) for tests, benchmarks and demos of the agent's s3 source, run as a process of its
// own so its listing cost is not the race-built test's. It can leave its address and take it
// back (an outage) with the data kept.
package s3d

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/johannesboyne/gofakes3"
)

// Config is the server's settings.
type Config struct {
	// Listen is the S3 endpoint's address; Down leaves it, Up takes it back.
	Listen string `koanf:"listen"`
	// AdminListen, when set, is a second S3 endpoint on the same data that outages leave up,
	// so a test can change objects while the agent's endpoint is down.
	AdminListen string `koanf:"admin_listen"`
	// Bucket is created at start and seeded with Seed generated objects (see Store.Seed).
	Bucket string `koanf:"bucket"`
	Seed   int    `koanf:"seed"`
	// AccessKey, when set, is the only access key a request to the S3 endpoint may name
	// (gofakes3 checks no credentials: this server does). SecretKey, when set too, is checked
	// as well: only requests with a valid AWS Signature V4 Authorization header are served.
	// The admin endpoint checks neither.
	AccessKey string `koanf:"access_key"`
	SecretKey string `koanf:"secret_key"`
	// Start is the LastModified of the first put; each put advances it by one millisecond.
	Start time.Time `koanf:"start"`
	// WallClock dates the puts after the seed by the wall clock (still one millisecond apart
	// at least), so a demo's new objects look new and its seeded ones old.
	WallClock bool `koanf:"wall_clock"`
}

// Default returns the settings of a local test server.
func Default() Config {
	return Config{Listen: "127.0.0.1:9000", Bucket: "data", Start: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

// Validate checks the settings.
func (c Config) Validate() error {
	switch {
	case c.Listen == "":
		return errors.New("listen: an address is required")
	case c.Bucket == "":
		return errors.New("bucket: a name is required")
	case c.Seed < 0:
		return fmt.Errorf("seed: %d objects", c.Seed)
	case c.SecretKey != "" && c.AccessKey == "":
		return errors.New("secret_key without access_key")
	}
	return nil
}

// Server serves one Store over S3 HTTP.
type Server struct {
	cfg     Config
	log     io.Writer
	store   *Store
	handler http.Handler // the S3 endpoint's: credentials checked
	admin   http.Handler // the admin endpoint's: none checked

	mu   sync.Mutex
	addr string       // the S3 endpoint's resolved address, kept across outages
	srv  *http.Server // nil while down
	wg   sync.WaitGroup
}

// New returns a server logging one line per event to log (nil: none).
func New(log io.Writer, cfg Config) *Server {
	if log == nil {
		log = io.Discard
	}
	st := NewStore(cfg.Start, time.Millisecond)
	s := &Server{cfg: cfg, log: log, store: st}
	s.admin = gofakes3.New(st, gofakes3.WithTimeSkewLimit(0)).Server()
	s.handler = s.auth(s.admin)
	return s
}

// Store is the server's data, for tests that change it directly.
func (s *Server) Store() *Store { return s.store }

// Run creates and seeds the bucket, serves until ctx ends (nil then), and handles ctl:
// SIGUSR1 leaves the S3 endpoint (connections refused, open ones closed), SIGUSR2 takes the
// same address back. It logs "listening addr=… admin_addr=…", "down addr=…", "up addr=…".
func (s *Server) Run(ctx context.Context, ctl <-chan os.Signal) error {
	if err := s.store.CreateBucket(s.cfg.Bucket); err != nil {
		return fmt.Errorf("create bucket %s: %w", s.cfg.Bucket, err)
	}
	t0 := time.Now()
	if err := s.store.Seed(s.cfg.Bucket, s.cfg.Seed); err != nil {
		return fmt.Errorf("seed bucket %s: %w", s.cfg.Bucket, err)
	}
	if s.cfg.WallClock {
		s.store.WallClock()
	}
	if s.cfg.Seed > 0 {
		fmt.Fprintf(s.log, "seeded bucket=%s objects=%d took=%v\n", s.cfg.Bucket, s.cfg.Seed, time.Since(t0).Round(time.Millisecond))
	}
	var admin *http.Server
	adminAddr := "-"
	if s.cfg.AdminListen != "" {
		l, err := net.Listen("tcp", s.cfg.AdminListen)
		if err != nil {
			return fmt.Errorf("listen admin %s: %w", s.cfg.AdminListen, err)
		}
		adminAddr = l.Addr().String()
		admin = s.serve(l, s.admin)
	}
	defer func() {
		if admin != nil {
			_ = admin.Close()
		}
		s.down()
		s.wg.Wait()
	}()
	if err := s.up(ctx, s.cfg.Listen); err != nil {
		return err
	}
	fmt.Fprintf(s.log, "listening addr=%s admin_addr=%s bucket=%s objects=%d\n", s.Addr(), adminAddr, s.cfg.Bucket, s.cfg.Seed)
	for {
		select {
		case <-ctx.Done():
			return nil
		case sig := <-ctl:
			switch sig {
			case syscall.SIGUSR1:
				if s.down() {
					fmt.Fprintf(s.log, "down addr=%s\n", s.Addr())
				}
			case syscall.SIGUSR2:
				if err := s.up(ctx, s.Addr()); err != nil {
					return err
				}
				fmt.Fprintf(s.log, "up addr=%s\n", s.Addr())
			}
		}
	}
}

// Addr is the S3 endpoint's address once Run listens.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// serve serves h on l until the returned server is closed.
func (s *Server) serve(l net.Listener, h http.Handler) *http.Server {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	s.wg.Go(func() { _ = srv.Serve(l) })
	return srv
}

// up listens on addr, if not listening yet. An address just left may still be held by the
// kernel for a moment: retry for up to 10 s.
func (s *Server) up(ctx context.Context, addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return nil
	}
	var l net.Listener
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; {
		if l, err = net.Listen("tcp", addr); err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	s.addr = l.Addr().String()
	s.srv = s.serve(l, s.handler)
	return nil
}

// down closes the S3 endpoint and its connections; false if it was down already.
func (s *Server) down() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return false
	}
	_ = s.srv.Close()
	s.srv = nil
	return true
}

// auth refuses a request naming another access key than cfg.AccessKey, or none, and, with a
// secret key set, one whose signature does not match.
func (s *Server) auth(next http.Handler) http.Handler {
	if s.cfg.AccessKey == "" {
		return next
	}
	refuse := func(w http.ResponseWriter, code, msg string) {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message></Error>`, code, html.EscapeString(msg))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch key := accessKeyOf(r); {
		case key == "":
			refuse(w, "AccessDenied", "Access Denied")
		case key != s.cfg.AccessKey:
			refuse(w, "InvalidAccessKeyId", "The AWS access key ID you provided does not exist in our records.")
		default:
			if s.cfg.SecretKey != "" {
				if err := verifyV4(r, s.cfg.SecretKey); err != nil {
					fmt.Fprintf(s.log, "refused method=%s path=%s error=%q\n", r.Method, r.URL.Path, err)
					refuse(w, "SignatureDoesNotMatch", err.Error())
					return
				}
			}
			next.ServeHTTP(w, r)
		}
	})
}

// accessKeyOf is the access key a request names: in a SigV4 or SigV2 Authorization header,
// or a presigned URL's query.
func accessKeyOf(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if _, cred, ok := strings.Cut(h, "Credential="); ok {
		key, _, _ := strings.Cut(cred, "/")
		return key
	}
	if v2, ok := strings.CutPrefix(h, "AWS "); ok {
		key, _, _ := strings.Cut(v2, ":")
		return key
	}
	q := r.URL.Query()
	if cred := q.Get("X-Amz-Credential"); cred != "" {
		key, _, _ := strings.Cut(cred, "/")
		return key
	}
	return q.Get("AWSAccessKeyId")
}

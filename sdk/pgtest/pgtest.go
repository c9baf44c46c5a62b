// Package pgtest runs a private PostgreSQL server for tests: initdb into a temporary
// directory, postgres on a loopback port of its own, stopped (and the directory removed) when
// the test ends. It can be stopped and started again on the same port and data, to test what a
// client does through an outage.
//
// It needs the server's binaries (initdb, postgres, pg_ctl's siblings psql and pg_isready):
// found on PATH, in $FUSTOR_PG_BIN, or in /usr/lib/postgresql/<version>/bin (Debian's
// postgresql package). Without initdb or postgres the test is skipped, saying so. PostgreSQL
// refuses to run as root: as root the server runs as the user "postgres" (setpriv, else
// runuser), its directory chowned to it.
//
// It uses no client library — SQL goes through psql — so any module's tests can use it (the
// agent's source tests, Fusion's end-to-end tests).
package pgtest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Defaults of a server.
const (
	User     = "fustor"
	Password = "fustor-test-password"
	Database = "postgres"
	// StartTimeout bounds the wait for a started server to accept connections.
	StartTimeout = 60 * time.Second
)

// Server is one private PostgreSQL server.
type Server struct {
	t    testing.TB
	bin  string
	dir  string // the temporary root: data/, sock/, log
	port int
	// asUser prefixes the server's commands when it must not run as root.
	asUser []string

	mu  sync.Mutex
	cmd *exec.Cmd
	// exited is closed when cmd has been waited for.
	exited chan struct{}
}

// Start initialises and starts a server; it is stopped and removed when t ends. Password
// authentication (scram-sha-256) is required on TCP, with User and Password.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := binDir()
	if bin == "" {
		t.Skip("pgtest: PostgreSQL server binaries (initdb, postgres) not found on PATH, in $FUSTOR_PG_BIN or /usr/lib/postgresql/*/bin: apt-get install postgresql")
	}
	dir, err := os.MkdirTemp("", "fustor-pg-")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	s := &Server{t: t, bin: bin, dir: dir}
	t.Cleanup(func() {
		s.Stop()
		_ = os.RemoveAll(dir)
	})
	if os.Geteuid() == 0 {
		s.asUser = dropRoot(t, dir)
	}
	if err := os.WriteFile(filepath.Join(dir, "pwfile"), []byte(Password+"\n"), 0o644); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	for _, d := range []string{"data", "sock"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatalf("pgtest: %v", err)
		}
	}
	if s.asUser != nil {
		chownAll(t, dir)
	}
	out, err := s.command(filepath.Join(bin, "initdb"), "-D", s.path("data"), "-U", User, "--pwfile", s.path("pwfile"),
		"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync").CombinedOutput()
	if err != nil {
		t.Fatalf("pgtest: initdb: %v\n%s", err, out)
	}
	s.port = freePort(t)
	s.Restart()
	return s
}

// Port is the server's TCP port on 127.0.0.1.
func (s *Server) Port() int { return s.port }

// Host is the server's address, "127.0.0.1".
func (s *Server) Host() string { return "127.0.0.1" }

// DSN is a URL for Database as User, with the password.
func (s *Server) DSN() string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", User, Password, s.port, Database)
}

// DSNWithoutPassword is DSN without the password (for tests of other ways to pass it).
func (s *Server) DSNWithoutPassword() string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", User, s.port, Database)
}

// Restart starts the server after Stop (Start has started it once): same port, same data.
// It returns once the server accepts connections.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	if s.cmd != nil {
		s.mu.Unlock()
		s.t.Fatal("pgtest: Restart while the server runs")
	}
	logf, err := os.OpenFile(s.path("log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		s.mu.Unlock()
		s.t.Fatalf("pgtest: %v", err)
	}
	// fsync off and small buffers: a test server, on a machine shared with other tests.
	cmd := s.command(filepath.Join(s.bin, "postgres"), "-D", s.path("data"), "-k", s.path("sock"), "-p", strconv.Itoa(s.port),
		"-h", "127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "shared_buffers=16MB", "-c", "max_connections=40")
	cmd.Stdout, cmd.Stderr = logf, logf
	err = cmd.Start()
	logf.Close()
	if err != nil {
		s.mu.Unlock()
		s.t.Fatalf("pgtest: start postgres: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()

	deadline := time.Now().Add(StartTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.ready() {
			return
		}
		select {
		case <-exited:
			s.mu.Lock()
			s.cmd = nil
			s.mu.Unlock()
			s.t.Fatalf("pgtest: postgres exited at start:\n%s", s.Log())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("pgtest: postgres does not accept connections after %v:\n%s", StartTimeout, s.Log())
		}
	}
}

// ready reports whether the server accepts connections.
func (s *Server) ready() bool {
	if isready := filepath.Join(s.bin, "pg_isready"); exists(isready) {
		return exec.Command(isready, "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(s.port), "-d", Database, "-U", User).Run() == nil
	}
	_, err := s.psql("SELECT 1")
	return err == nil
}

// Stop stops the server (a fast shutdown: sessions are disconnected) and waits for it. It
// may be called again, and Restart brings the server back.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// Exec runs SQL statements (psql, stopping at the first error, which fails the test).
func (s *Server) Exec(sql ...string) {
	s.t.Helper()
	if out, err := s.psql(sql...); err != nil {
		s.t.Fatalf("pgtest: %v\n%s", err, out)
	}
}

// Query runs one statement and returns its rows, unaligned: columns split by "|", rows by
// newlines (no header, no trailing newline).
func (s *Server) Query(sql string) string {
	s.t.Helper()
	out, err := s.psql(sql)
	if err != nil {
		s.t.Fatalf("pgtest: %v\n%s", err, out)
	}
	return strings.TrimRight(out, "\n")
}

// psql runs statements over TCP with the password.
func (s *Server) psql(sql ...string) (string, error) {
	psql := filepath.Join(s.bin, "psql")
	if !exists(psql) {
		var err error
		if psql, err = exec.LookPath("psql"); err != nil {
			return "", errors.New("psql not found (the postgresql-client package)")
		}
	}
	args := []string{"-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", strconv.Itoa(s.port), "-U", User, "-d", Database}
	for _, q := range sql {
		args = append(args, "-c", q)
	}
	cmd := exec.Command(psql, args...)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+Password, "PGCONNECT_TIMEOUT=5")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("psql: %w", err)
	}
	return out.String(), nil
}

// Log returns the server's log so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.path("log"))
	return string(b)
}

func (s *Server) path(name string) string { return filepath.Join(s.dir, name) }

// command is a server command, as the unprivileged user when run as root.
func (s *Server) command(name string, args ...string) *exec.Cmd {
	if s.asUser == nil {
		return exec.Command(name, args...)
	}
	all := slices.Concat(s.asUser[1:], []string{name}, args)
	return exec.Command(s.asUser[0], all...)
}

// dropRoot returns the command prefix running a command as the user postgres; the directory
// must be reachable by it.
func dropRoot(t testing.TB, dir string) []string {
	t.Helper()
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Skipf("pgtest: running as root and there is no user postgres to run the server as: %v", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	// setpriv execs the server itself, so signals reach it; runuser stays its parent.
	if p, err := exec.LookPath("setpriv"); err == nil {
		return []string{p, "--reuid=" + u.Uid, "--regid=" + u.Gid, "--init-groups", "--"}
	}
	if p, err := exec.LookPath("runuser"); err == nil {
		return []string{p, "-u", "postgres", "--"}
	}
	t.Skip("pgtest: running as root without setpriv or runuser to run the server as postgres")
	return nil
}

// chownAll gives dir and what it holds to the user postgres.
func chownAll(t testing.TB, dir string) {
	t.Helper()
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	err = filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatalf("pgtest: chown %s: %v", dir, err)
	}
}

// binDir finds the directory of initdb and postgres ("" = not installed).
func binDir() string {
	has := func(d string) bool {
		return d != "" && exists(filepath.Join(d, "initdb")) && exists(filepath.Join(d, "postgres"))
	}
	if d := os.Getenv("FUSTOR_PG_BIN"); has(d) {
		return d
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		// Debian links initdb onto PATH without its siblings: use the real directory.
		if r, err := filepath.EvalSymlinks(p); err == nil && has(filepath.Dir(r)) {
			return filepath.Dir(r)
		}
		if has(filepath.Dir(p)) {
			return filepath.Dir(p)
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	for _, d := range dirs {
		if has(d) {
			return d
		}
	}
	return ""
}

// version is the major version in /usr/lib/postgresql/<version>/bin.
func version(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

func exists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// freePort returns a loopback port free now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

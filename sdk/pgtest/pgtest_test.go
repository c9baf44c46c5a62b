package pgtest

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestServerSurvivesARestart: a started server takes statements, keeps its data across Stop
// and Restart, and serves on the same port again.
func TestServerSurvivesARestart(t *testing.T) {
	s := Start(t)
	s.Exec("CREATE TABLE t (id int PRIMARY KEY, v text)", "INSERT INTO t VALUES (1, 'a'), (2, 'b|c')")
	if got := s.Query("SELECT id, v FROM t ORDER BY id"); got != "1|a\n2|b|c" {
		t.Fatalf("rows %q", got)
	}
	port := s.Port()
	s.Stop()
	if _, err := s.psql("SELECT 1"); err == nil {
		t.Fatal("a stopped server answered")
	}
	s.Stop() // idempotent
	s.Restart()
	if s.Port() != port {
		t.Fatalf("port %d after restart, was %d", s.Port(), port)
	}
	if got := s.Query("SELECT count(*) FROM t"); got != "2" {
		t.Fatalf("count %q after restart", got)
	}
}

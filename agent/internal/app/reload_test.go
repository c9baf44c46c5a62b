package app

import (
	"context"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/fustor/fustor/agent/internal/config"
	"github.com/fustor/fustor/agent/internal/pipe"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// baseReloadConfig is two trees, each with its pipe to one sender.
func baseReloadConfig(t *testing.T, one, two string) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.AgentID = "test-agent"
	cfg.Senders["fusion"] = config.Sender{Address: "127.0.0.1:1", APIKey: "k"}
	cfg.Sources["one"] = config.Source{Driver: "fs", Root: one}
	cfg.Sources["two"] = config.Source{Driver: "fs", Root: two}
	cfg.Pipes["p1"] = config.Pipe{Source: "one", Sender: "fusion"}
	cfg.Pipes["p2"] = config.Pipe{Source: "two", Sender: "fusion"}
	return cfg
}

// TestReloadChangesOnlyWhatChanged: a reload adds, removes and restarts by id; a pipe it does
// not name keeps its very object (and so its session), and an invalid config changes nothing.
// The agent is not running: the registry holds the parts Run would start.
func TestReloadChangesOnlyWhatChanged(t *testing.T) {
	one, two, three := t.TempDir(), t.TempDir(), t.TempDir()
	sameKey, otherKey := filepath.Join(three, "same.key"), filepath.Join(three, "other.key")
	for f, k := range map[string]string{sameKey: "k\n", otherKey: "k3\n"} {
		if err := os.WriteFile(f, []byte(k), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		edit   func(c *config.Config)
		kept   []string // pipes that must be the same objects afterwards
		fresh  []string // pipes that must be new objects
		gone   []string // pipes that must be gone
		lines  []string // log messages of the changes, sorted
		errs   []string // substrings of the refusal; nil = applied
		fields map[string]string
	}{
		{
			name:  "nothing changed",
			edit:  func(*config.Config) {},
			kept:  []string{"p1", "p2"},
			lines: nil,
		},
		{
			name: "a source and a pipe added",
			edit: func(c *config.Config) {
				c.Sources["three"] = config.Source{Driver: "fs", Root: three}
				c.Pipes["p3"] = config.Pipe{Source: "three", Sender: "fusion"}
			},
			kept:  []string{"p1", "p2"},
			fresh: []string{"p3"},
			lines: []string{"pipe added", "source added"},
		},
		{
			name: "a pipe and its source removed",
			edit: func(c *config.Config) {
				delete(c.Sources, "two")
				delete(c.Pipes, "p2")
			},
			kept:  []string{"p1"},
			gone:  []string{"p2"},
			lines: []string{"pipe removed", "source removed"},
		},
		{
			name:  "a pipe's setting changed",
			edit:  func(c *config.Config) { p := c.Pipes["p2"]; p.BatchSize = 7; c.Pipes["p2"] = p },
			kept:  []string{"p1"},
			fresh: []string{"p2"},
			lines: []string{"pipe restarted: its settings changed"},
		},
		{
			name:  "a source's setting changed",
			edit:  func(c *config.Config) { s := c.Sources["two"]; s.Excludes = []string{"*.tmp"}; c.Sources["two"] = s },
			kept:  []string{"p1"},
			fresh: []string{"p2"},
			lines: []string{"pipe restarted: its source restarted", "source restarted: its settings changed"},
		},
		{
			name: "a source id renamed, same tree",
			edit: func(c *config.Config) {
				c.Sources["deux"] = c.Sources["two"]
				delete(c.Sources, "two")
				c.Pipes["p2"] = config.Pipe{Source: "deux", Sender: "fusion"}
			},
			kept:  []string{"p1", "p2"},
			lines: []string{"source ids changed"},
		},
		{
			name:  "the sender's key changed",
			edit:  func(c *config.Config) { c.Senders["fusion"] = config.Sender{Address: "127.0.0.1:1", APIKey: "k2"} },
			fresh: []string{"p1", "p2"},
			lines: []string{"pipe restarted: its sender changed", "pipe restarted: its sender changed", "sender changed"},
		},
		{
			// The key file is read at each reload: the same key from a file changes nothing.
			name: "the sender's key moved to a file",
			edit: func(c *config.Config) {
				c.Senders["fusion"] = config.Sender{Address: "127.0.0.1:1", APIKeyFile: sameKey}
			},
			kept: []string{"p1", "p2"},
		},
		{
			name: "the sender's key file holds another key",
			edit: func(c *config.Config) {
				c.Senders["fusion"] = config.Sender{Address: "127.0.0.1:1", APIKeyFile: otherKey}
			},
			fresh: []string{"p1", "p2"},
			lines: []string{"pipe restarted: its sender changed", "pipe restarted: its sender changed", "sender changed"},
		},
		{
			name: "invalid: the sender's key file is missing",
			edit: func(c *config.Config) {
				c.Senders["fusion"] = config.Sender{Address: "127.0.0.1:1", APIKeyFile: three + "/gone.key"}
			},
			kept: []string{"p1", "p2"},
			errs: []string{"senders.fusion: api_key_file: read key file"},
		},
		{
			name: "invalid: unknown source, bad batch size and a missing root",
			edit: func(c *config.Config) {
				c.Pipes["p1"] = config.Pipe{Source: "nope", Sender: "fusion"}
				c.Pipes["p2"] = config.Pipe{Source: "two", Sender: "fusion", BatchSize: -1}
				c.Sources["three"] = config.Source{Driver: "fs", Root: three + "/missing"}
			},
			kept: []string{"p1", "p2"},
			errs: []string{`unknown source "nope"`, "batch_size", "not a readable directory"},
		},
		{
			name: "invalid: two pipes send one tree to one sender",
			edit: func(c *config.Config) {
				c.Sources["again"] = config.Source{Driver: "fs", Root: one + "/"}
				c.Pipes["p3"] = config.Pipe{Source: "again", Sender: "fusion"}
			},
			kept: []string{"p1", "p2"},
			errs: []string{"one pipe per source and sender"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zap.InfoLevel)
			a, err := New(zap.New(core), baseReloadConfig(t, one, two), Options{Now: func() time.Time { return time.Unix(1000, 0) }})
			if err != nil {
				t.Fatal(err)
			}
			defer a.close()
			before := map[string]*pipe.Pipe{}
			for id := range a.pipes {
				before[id] = a.Pipe(id)
			}
			keysBefore := a.reg.keys()
			logs.TakeAll()
			cfg := baseReloadConfig(t, one, two)
			tt.edit(&cfg)
			err = a.Reload(cfg)
			ok, at, succeeded, refused := a.reloads.get()
			if !at.Equal(time.Unix(1000, 0)) {
				t.Errorf("reload time %v", at)
			}
			if tt.errs != nil {
				if err == nil {
					t.Fatal("reload applied, want refused")
				}
				refusals := logs.FilterMessage("reload refused; the running configuration is kept").All()
				for _, want := range tt.errs {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not mention %q", err, want)
					}
					if !slices.ContainsFunc(refusals, func(e observer.LoggedEntry) bool {
						return strings.Contains(e.ContextMap()["error"].(string), want)
					}) {
						t.Errorf("no refusal line mentions %q", want)
					}
				}
				if ok || refused != 1 || succeeded != 0 {
					t.Errorf("reload stats ok=%v applied=%d refused=%d", ok, succeeded, refused)
				}
				if got := a.reg.keys(); !slices.Equal(got, keysBefore) {
					t.Errorf("parts %v, want %v unchanged", got, keysBefore)
				}
			} else {
				if err != nil {
					t.Fatalf("Reload: %v", err)
				}
				if !ok || succeeded != 1 {
					t.Errorf("reload stats ok=%v applied=%d", ok, succeeded)
				}
			}
			for _, id := range tt.kept {
				if a.Pipe(id) == nil || a.Pipe(id) != before[id] {
					t.Errorf("pipe %s was replaced; want it untouched", id)
				}
			}
			for _, id := range tt.fresh {
				if a.Pipe(id) == nil || a.Pipe(id) == before[id] {
					t.Errorf("pipe %s is missing or the old one; want a new one", id)
				}
			}
			for _, id := range tt.gone {
				if a.Pipe(id) != nil {
					t.Errorf("pipe %s still there", id)
				}
			}
			// Every configured pipe, and every source, is a part of the registry; nothing else.
			var want []string
			for id := range a.pipes {
				want = append(want, partKey(kindPipe, id))
			}
			for sig := range a.sources {
				want = append(want, partKey(kindSource, sig))
			}
			slices.Sort(want)
			if got := a.reg.keys(); !slices.Equal(got, want) {
				t.Errorf("registry %v, want %v", got, want)
			}
			// The sources' pipe lists follow (an overflow audits exactly these).
			for _, s := range a.sources {
				for _, p := range s.pipeList() {
					if !slices.ContainsFunc(slices.Collect(maps.Values(a.pipes)), func(e *pipeEntry) bool { return e.p == p && e.sig == s.sig }) {
						t.Errorf("source %s lists pipe %s, which is not its", s.sig, p.ID())
					}
				}
			}
			var lines []string
			for _, e := range logs.All() {
				if strings.HasPrefix(e.Message, "pipe ") || strings.HasPrefix(e.Message, "source ") || strings.HasPrefix(e.Message, "sender ") {
					lines = append(lines, e.Message)
				}
			}
			slices.Sort(lines)
			if !slices.Equal(lines, tt.lines) {
				t.Errorf("change lines %q, want %q", lines, tt.lines)
			}
		})
	}
}

// TestValidateReportsEveryError: Validate (fustor-agent --validate) reports each problem, the
// agent's own rules included, and passes a good config.
func TestValidateReportsEveryError(t *testing.T) {
	root := t.TempDir()
	tests := []struct {
		name string
		edit func(c *config.Config)
		want []string
	}{
		{"valid", func(*config.Config) {}, nil},
		{"three problems", func(c *config.Config) {
			c.Pipes["p2"] = config.Pipe{Source: "nope", Sender: "gone"}
			c.Senders["fusion"] = config.Sender{APIKey: "k"}
		}, []string{`unknown source "nope"`, `unknown sender "gone"`, "address is required"}},
		{"same tree, different settings", func(c *config.Config) {
			c.Sources["again"] = config.Source{Root: root + "/", Excludes: []string{"x"}}
		}, []string{"same tree"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.AgentID = "a"
			cfg.Sources["src"] = config.Source{Root: root}
			cfg.Senders["fusion"] = config.Sender{Address: "127.0.0.1:1", APIKey: "k"}
			cfg.Pipes["p"] = config.Pipe{Source: "src", Sender: "fusion"}
			tt.edit(&cfg)
			errs := Errors(Validate(cfg))
			if len(errs) != len(tt.want) {
				t.Fatalf("errors %q, want %d", errs, len(tt.want))
			}
			for i, want := range tt.want {
				if !slices.ContainsFunc(errs, func(e error) bool { return strings.Contains(e.Error(), want) }) {
					t.Errorf("error %d: none of %q mentions %q", i, errs, want)
				}
			}
		})
	}
}

// TestReloadKeepsUnchangedSessions runs the agent against a fake Fusion: a reload that adds a
// pipe starts its session, and one that removes it ends that session; the untouched pipe keeps
// its one session throughout.
func TestReloadKeepsUnchangedSessions(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &beatingFusion{fakeFusion: &fakeFusion{rows: map[fustorv1.MessageSource]int{}}}
	stop := serveFusionWith(f, f.fakeFusion, ln)
	t.Cleanup(stop)
	one, two := t.TempDir(), t.TempDir()
	base := func() config.Config {
		cfg := baseReloadConfig(t, one, two)
		cfg.Senders["fusion"] = config.Sender{Address: ln.Addr().String(), APIKey: "k"}
		delete(cfg.Pipes, "p2")
		for id, p := range cfg.Pipes {
			p.BackoffMin, p.BackoffMax = 10*time.Millisecond, 100*time.Millisecond
			cfg.Pipes[id] = p
		}
		return cfg
	}
	a, err := New(nil, base(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	p1 := a.Pipe("p1")
	eventually(t, "p1's session", func() bool { return p1.Status().Connected })

	added := base()
	added.Pipes["p2"] = config.Pipe{Source: "two", Sender: "fusion", BackoffMin: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond}
	if err := a.Reload(added); err != nil {
		t.Fatal(err)
	}
	p2 := a.Pipe("p2")
	if p2 == nil {
		t.Fatal("no pipe p2 after the reload")
	}
	eventually(t, "p2's session", func() bool { return p2.Status().Connected })
	if err := a.Reload(base()); err != nil {
		t.Fatal(err)
	}
	if p2.Status().Connected {
		t.Error("p2 still holds a session after its removal")
	}
	if a.Pipe("p1") != p1 || !p1.Status().Connected || p1.Status().Sessions != 1 {
		t.Errorf("p1: %+v; want the same pipe, connected, on its first session", p1.Status())
	}
	if created, _ := f.record(); created != 2 {
		t.Errorf("%d sessions created, want 2 (p1 once, p2 once)", created)
	}
}

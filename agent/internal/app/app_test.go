package app

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/fustor/fustor/agent/internal/bus"
	"github.com/fustor/fustor/agent/internal/config"
	"github.com/fustor/fustor/agent/internal/mapping"
	"github.com/fustor/fustor/agent/internal/pipe"
	agentsource "github.com/fustor/fustor/agent/internal/source"
)

// TestMain keeps the agents' default state_dir ($FUSTOR_HOME/agent-state) out of the real home.
func TestMain(m *testing.M) {
	home, err := os.MkdirTemp("", "fustor-home-")
	if err != nil {
		panic(err)
	}
	os.Setenv("FUSTOR_HOME", home)
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { os.RemoveAll(home) }))
}

// TestNewSharesSourcePerSignature checks DESIGN.md §4.2: ids naming the same tree share one
// source, watcher and bus; different trees do not; the same tree with different settings is
// a configuration error.
func TestNewSharesSourcePerSignature(t *testing.T) {
	x, y := t.TempDir(), t.TempDir()
	tests := []struct {
		name    string
		sources map[string]config.Source
		// groups are the source ids expected to share one source, each sorted.
		groups  [][]string
		wantErr []string // substrings of New's error; nil = no error
		// oneSender sends every pipe to the same sender (else each to its own).
		oneSender bool
	}{
		{
			name: "same root, one with a trailing slash",
			sources: map[string]config.Source{
				"alpha": {Driver: "fs", Root: x},
				"beta":  {Driver: "fs", Root: x + "/"},
			},
			groups: [][]string{{"alpha", "beta"}},
		},
		{
			name: "different roots",
			sources: map[string]config.Source{
				"alpha": {Driver: "fs", Root: x},
				"beta":  {Driver: "fs", Root: y},
			},
			groups: [][]string{{"alpha"}, {"beta"}},
		},
		{
			name: "same root, different excludes",
			sources: map[string]config.Source{
				"alpha": {Driver: "fs", Root: x, Excludes: []string{"*.tmp"}},
				"beta":  {Driver: "fs", Root: x + "/"},
			},
			wantErr: []string{"alpha", "beta", "same tree"},
		},
		{
			name: "same root and the same sender twice",
			sources: map[string]config.Source{
				"alpha": {Driver: "fs", Root: x},
				"beta":  {Driver: "fs", Root: x + "/"},
			},
			oneSender: true,
			wantErr:   []string{"pipe-alpha", "pipe-beta", "one pipe per source and sender"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.AgentID = "test-agent"
			// New must not dial: grpc.NewClient connects lazily, on the first call.
			for id, sc := range tt.sources {
				snd := "fusion-" + id
				if tt.oneSender {
					snd = "fusion"
				}
				cfg.Senders[snd] = config.Sender{Address: "127.0.0.1:1", APIKey: "k"}
				cfg.Sources[id] = sc
				cfg.Pipes["pipe-"+id] = config.Pipe{Source: id, Sender: snd}
			}
			core, logs := observer.New(zap.InfoLevel)
			a, err := New(zap.New(core), cfg, Options{})
			if tt.wantErr != nil {
				if err == nil {
					a.close()
					t.Fatal("New succeeded, want an error")
				}
				for _, want := range tt.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not mention %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer a.close()

			if len(a.sources) != len(tt.groups) {
				t.Fatalf("got %d sources, want %d", len(a.sources), len(tt.groups))
			}
			buses := map[*bus.Bus[agentsource.Event]]bool{}
			for _, ids := range tt.groups {
				var s *source
				for _, c := range a.sources {
					if slices.Equal(c.ids, ids) {
						s = c
					}
				}
				if s == nil {
					t.Fatalf("no source shared by exactly %v", ids)
				}
				if s.bus == nil || buses[s.bus] {
					t.Fatalf("source %v: bus %p is nil or shared with another source", ids, s.bus)
				}
				buses[s.bus] = true
				// Every pipe on any of the ids reads this source (and is audited on overflow).
				if len(s.pipes) != len(ids) {
					t.Errorf("source %v feeds %d pipes, want %d", ids, len(s.pipes), len(ids))
				}
				for _, id := range ids {
					if !slices.Contains(s.pipes, a.Pipe("pipe-"+id)) {
						t.Errorf("pipe-%s does not read the source of %v", id, ids)
					}
				}
			}
			merged := logs.FilterMessage("sources share one watcher and bus").Len()
			if want := len(tt.sources) - len(tt.groups); merged != want {
				t.Errorf("logged %d merges, want %d", merged, want)
			}
		})
	}
}

// TestPipeConfigCarriesEverySetting: every key of a configured pipe but its source and sender
// reaches the pipe under the same name, so no documented setting is read and then dropped.
func TestPipeConfigCarriesEverySetting(t *testing.T) {
	pc := config.Pipe{Source: "s", Sender: "f"}
	v := reflect.ValueOf(&pc).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		if f.Kind() == reflect.Pointer {
			f.Set(reflect.New(f.Type().Elem()))
			f = f.Elem()
		}
		switch f.Kind() { // a distinct, non-default value per field
		case reflect.Int, reflect.Int64:
			f.SetInt(int64(1000 + i))
		case reflect.Float64:
			f.SetFloat(0.01 * float64(i))
		}
	}
	got := reflect.ValueOf(pipeConfig("p", "a", "fs:///x", config.Source{Driver: "fs"}, pc))
	if g := got.Interface().(pipe.Config); g.Schema != "fs" || g.SchemaVersion != 1 {
		t.Errorf("schema %q version %d, want fs 1", g.Schema, g.SchemaVersion)
	}
	for i := range v.NumField() {
		name := v.Type().Field(i).Name
		// FieldsMapping holds slices (no ==): checked below, on a generic source.
		if name == "Source" || name == "Sender" || name == "FieldsMapping" {
			continue
		}
		want := reflect.Indirect(v.Field(i))
		g := got.FieldByName(name)
		if !g.IsValid() {
			t.Errorf("pipe.Config has no %s", name)
			continue
		}
		if !g.Equal(want) {
			t.Errorf("%s: pipe got %v, configured %v", name, g, want)
		}
	}
	pc.FieldsMapping = mapping.Config{OnCastError: mapping.OnCastErrorDropRow, Fields: []mapping.Rule{{To: "id", Type: "int"}}}
	sc := config.Source{Driver: "sql", SQL: config.SQL{Table: "items", SchemaVersion: 3}}
	g := pipeConfig("p", "a", "sql://x", sc, pc)
	if !reflect.DeepEqual(g.FieldsMapping, pc.FieldsMapping) || g.Schema != "items" || g.SchemaVersion != 3 {
		t.Errorf("sql pipe: mapping %+v schema %q version %d; want %+v, items 3", g.FieldsMapping, g.Schema, g.SchemaVersion, pc.FieldsMapping)
	}
}

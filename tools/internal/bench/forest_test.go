package bench

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fustor/fustor/sdk/config"
)

// fusionYAML mirrors the parts of Fusion's configuration the forest phase writes; it is read
// with the loader the daemons use.
type fusionYAML struct {
	Server struct {
		Listen      string   `koanf:"listen"`
		AdminKeys   []string `koanf:"admin_keys"`
		DebugListen string   `koanf:"debug_listen"`
	} `koanf:"server"`
	Receivers map[string]struct {
		APIKeys []struct {
			Key  string `koanf:"key"`
			Pipe string `koanf:"pipe"`
		} `koanf:"api_keys"`
	} `koanf:"receivers"`
	Pipes map[string]struct {
		Receiver string   `koanf:"receiver"`
		Views    []string `koanf:"views"`
	} `koanf:"pipes"`
	Views map[string]struct {
		Driver    string            `koanf:"driver"`
		Schema    string            `koanf:"schema"`
		Members   map[string]string `koanf:"members"`
		QueryKeys []string          `koanf:"query_keys"`
	} `koanf:"views"`
}

type agentYAML struct {
	AgentID string `koanf:"agent_id"`
	Sources map[string]struct {
		Root string `koanf:"root"`
	} `koanf:"sources"`
	Senders map[string]struct {
		Address string `koanf:"address"`
		APIKey  string `koanf:"api_key"`
	} `koanf:"senders"`
	Pipes map[string]struct {
		Source        string `koanf:"source"`
		Sender        string `koanf:"sender"`
		AuditInterval string `koanf:"audit_interval"`
	} `koanf:"pipes"`
}

func loadYAML(t *testing.T, text string, dst any) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := config.Load(dst, config.Source{Path: path, Environ: func() []string { return nil }}); err != nil {
		t.Fatalf("load %s:\n%s", err, text)
	}
}

func TestForestConfig(t *testing.T) {
	const n = 3
	var f fusionYAML
	loadYAML(t, forestFusionConfig("127.0.0.1:1", "127.0.0.1:2", n), &f)
	if f.Server.Listen != "127.0.0.1:1" || f.Server.DebugListen != "127.0.0.1:2" || !slices.Equal(f.Server.AdminKeys, []string{adminKey}) {
		t.Fatalf("server %+v", f.Server)
	}
	keys := f.Receivers["default"].APIKeys
	if len(f.Receivers) != 1 || len(keys) != n || len(f.Pipes) != n {
		t.Fatalf("%d receivers, %d keys, %d pipes; want 1, %d, %d", len(f.Receivers), len(keys), len(f.Pipes), n, n)
	}
	forest, fsView := f.Views[forestView], f.Views[forestFSView]
	if len(f.Views) != 2 || forest.Driver != "forest-fs" || fsView.Driver != "fs" || forest.Schema != "fs" ||
		!slices.Equal(forest.QueryKeys, []string{queryKey}) || !slices.Equal(fsView.QueryKeys, []string{queryKey}) {
		t.Fatalf("views %+v", f.Views)
	}
	seenKeys, labels := map[string]bool{}, map[string]bool{}
	for i := 1; i <= n; i++ {
		k := keys[i-1]
		pipe, ok := f.Pipes[k.Pipe]
		if seenKeys[k.Key] || k.Pipe != forestPipe(i) || !ok || pipe.Receiver != "default" {
			t.Fatalf("key %d %+v: each key its own pipe of the receiver", i, k)
		}
		seenKeys[k.Key] = true
		// Fan-out: member-1's pipe feeds the fs view too; the others, the forest alone.
		want := []string{forestView}
		if i == 1 {
			want = []string{forestFSView, forestView}
		}
		if !slices.Equal(pipe.Views, want) {
			t.Fatalf("pipe %s feeds %v; want %v", k.Pipe, pipe.Views, want)
		}
		label := forest.Members[k.Pipe]
		if label != forestMember(i) || labels[label] {
			t.Fatalf("pipe %s is member %q; want %s, unique", k.Pipe, label, forestMember(i))
		}
		labels[label] = true

		// Its agent: its own id, its key, the same root.
		var a agentYAML
		loadYAML(t, forestAgentConfig(i, "/data/tree", "127.0.0.1:1", 0.5), &a)
		p, ok := a.Pipes[forestPipe(i)]
		if a.AgentID != "fustor-bench-agent-"+string(rune('0'+i)) || a.Senders["fusion"].APIKey != k.Key || a.Senders["fusion"].Address != "127.0.0.1:1" ||
			a.Sources["tree"].Root != "/data/tree" || len(a.Pipes) != 1 || !ok || p.Source != "tree" || p.Sender != "fusion" || p.AuditInterval != "1h0m0s" {
			t.Fatalf("agent %d: %+v", i, a)
		}
	}
	if len(forest.Members) != n {
		t.Fatalf("members %v", forest.Members)
	}
	// The default run's configuration is untouched: one pipe, one fs view, no forest.
	var d fusionYAML
	loadYAML(t, fusionConfig("127.0.0.1:1", "127.0.0.1:2", "tree"), &d)
	if len(d.Pipes) != 1 || len(d.Views) != 1 || d.Views["tree"].Driver != "fs" || d.Receivers["default"].APIKeys[0].Key != ingestKey {
		t.Fatalf("default config %+v", d)
	}
}

func TestForestOptions(t *testing.T) {
	// The forest phase needs --forest N > 0.
	for _, args := range [][]string{{"--phases", "forest"}, {"--forest", "-1"}} {
		var stderr bytes.Buffer
		args = append(args, "--out", t.TempDir(), "--bin", fakeBin(t), "--dir", filepath.Join(t.TempDir(), "tree"))
		if code := Main(context.Background(), args, io.Discard, &stderr, false); code != 2 || !strings.Contains(stderr.String(), "--forest") {
			t.Errorf("Main(%q) = %d (stderr %q); want 2 and --forest named", args, code, stderr.String())
		}
	}
	o := DefaultOptions()
	if o.Forest != 0 || slices.Contains(o.Phases, forestPhase) {
		t.Fatalf("default options run the forest: %+v", o)
	}
	if notes := notes(o); slices.ContainsFunc(notes, func(s string) bool { return strings.HasPrefix(s, "F") }) {
		t.Fatal("the default run's notes describe the forest")
	}
	o.Forest = 3
	if notes := notes(o); !slices.ContainsFunc(notes, func(s string) bool { return strings.HasPrefix(s, "F1:") }) {
		t.Fatal("the forest notes are missing")
	}
}

func TestHistogramPlus(t *testing.T) {
	a := histogram{bounds: []float64{0.001, 1}, counts: []float64{1, 2}}
	if got := a.plus(histogram{}); !slices.Equal(got.counts, a.counts) {
		t.Fatalf("plus nothing = %v", got.counts)
	}
	if got := a.plus(a); !slices.Equal(got.counts, []float64{2, 4}) || !slices.Equal(a.counts, []float64{1, 2}) {
		t.Fatalf("plus itself = %v (a now %v)", got.counts, a.counts)
	}
}

package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type testCfg struct {
	Server struct {
		Listen  string        `koanf:"listen"`
		Timeout time.Duration `koanf:"timeout"`
	} `koanf:"server"`
	Names []string `koanf:"names"`
	Keep  string   `koanf:"keep"`
}

func TestLoadPrecedence(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("server:\n  listen: file-a\n  timeout: 3s\nnames: [x, y]\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "b.yml"), []byte("server:\n  listen: file-b\n"), 0o644))
	tests := []struct {
		name       string
		env        []string
		flags      []string
		wantListen string
	}{
		{"files in name order", nil, nil, "file-b"},
		{"env over files", []string{"FUSTOR_SERVER__LISTEN=env", "FUSTOR_HOME=/x"}, nil, "env"},
		{"flags over env", []string{"FUSTOR_SERVER__LISTEN=env"}, []string{"--server.listen=flag"}, "flag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testCfg{Keep: "default"}
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			fs.String("server.listen", "unused-default", "")
			fs.String("config", "", "")
			must(t, fs.Parse(append(tt.flags, "--config", dir)))
			err := Load(&cfg, Source{Path: dir, Environ: func() []string { return tt.env }, Flags: fs})
			must(t, err)
			if cfg.Server.Listen != tt.wantListen || cfg.Server.Timeout != 3*time.Second || len(cfg.Names) != 2 || cfg.Keep != "default" {
				t.Fatalf("cfg = %+v", cfg)
			}
		})
	}
}

func TestEnvOverridesOneFieldOfAMapEntry(t *testing.T) {
	type sender struct {
		Address string        `koanf:"address"`
		Key     string        `koanf:"key"`
		Wait    time.Duration `koanf:"wait"`
	}
	cfg := struct {
		Senders map[string]sender `koanf:"senders"`
	}{Senders: map[string]sender{"fusion": {Address: "a:1", Key: "k", Wait: time.Second}}}
	env := []string{"FUSTOR_SENDERS__FUSION__ADDRESS=b:2"}
	must(t, Load(&cfg, Source{Environ: func() []string { return env }}))
	if got := cfg.Senders["fusion"]; got != (sender{Address: "b:2", Key: "k", Wait: time.Second}) {
		t.Fatalf("sender = %+v", got)
	}
}

func TestLoadMissingFile(t *testing.T) {
	var cfg testCfg
	if err := Load(&cfg, Source{Path: filepath.Join(t.TempDir(), "nope.yaml"), Environ: func() []string { return nil }}); err == nil {
		t.Fatal("want error for a missing file")
	}
}

func TestHome(t *testing.T) {
	if got := Home(func(string) string { return "/h" }); got != "/h" {
		t.Fatalf("Home = %q", got)
	}
	if got := Home(func(string) string { return "" }); filepath.Base(got) != ".fustor" {
		t.Fatalf("Home = %q", got)
	}
}

// TestLoadFromHome: with neither a path nor $FUSTOR_CONFIG, $FUSTOR_HOME/<name>.yaml is read
// when it exists; an explicit path or $FUSTOR_CONFIG wins; no file there is no error.
func TestLoadFromHome(t *testing.T) {
	home := t.TempDir()
	must(t, os.WriteFile(filepath.Join(home, "fusion.yaml"), []byte("keep: from-home\n"), 0o644))
	other := filepath.Join(t.TempDir(), "other.yaml")
	must(t, os.WriteFile(other, []byte("keep: from-config\n"), 0o644))
	for _, tc := range []struct {
		name, cfgName string
		env           []string
		want          string
	}{
		{"home file", "fusion", []string{"FUSTOR_HOME=" + home}, "from-home"},
		{"FUSTOR_CONFIG wins", "fusion", []string{"FUSTOR_HOME=" + home, "FUSTOR_CONFIG=" + other}, "from-config"},
		{"no file for this component", "agent", []string{"FUSTOR_HOME=" + home}, "default"},
		{"no name: the home is not read", "", []string{"FUSTOR_HOME=" + home}, "default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testCfg{Keep: "default"}
			must(t, Load(&cfg, Source{Name: tc.cfgName, Environ: func() []string { return tc.env }}))
			if cfg.Keep != tc.want {
				t.Fatalf("keep = %q, want %q", cfg.Keep, tc.want)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

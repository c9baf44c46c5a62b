// Package config loads a component's configuration with koanf, in increasing precedence:
// the component's Default(), YAML files (one file or a directory of *.yaml / *.yml, read in
// name order), FUSTOR_* environment variables, then command-line flags.
//
// Environment keys map to config keys by dropping the prefix, lower-casing, and reading "__" as
// the nesting separator: FUSTOR_SERVER__LISTEN=0.0.0.0:7070 sets server.listen. Variables
// without "__" that are not top-level keys (FUSTOR_HOME, FUSTOR_CONFIG, ...) are ignored by the
// struct decoder.
package config

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/providers/structs"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
)

// EnvPrefix is the prefix of every environment variable read.
const EnvPrefix = "FUSTOR_"

// Source says where configuration comes from.
type Source struct {
	// Path is a YAML file or a directory of YAML files; empty means $FUSTOR_CONFIG, else the
	// component's file in the Fustor home directory ($FUSTOR_HOME/<Name>.yaml, see Home) when
	// Name is set and that file exists, else none.
	Path string
	// Name is the component (fusion, agent) whose file the home directory may hold.
	Name string
	// Environ returns the environment (nil = os.Environ).
	Environ func() []string
	// Flags are parsed command-line flags; only flags the user set override, and only those
	// whose name is a config key (dots for nesting, e.g. --server.listen).
	Flags *pflag.FlagSet
}

// Load fills dst (already holding defaults) from src.
func Load(dst any, src Source) error {
	k := koanf.New(".")
	// Defaults go into koanf first, so a later source that sets one field of a map entry
	// (FUSTOR_SENDERS__FUSION__ADDRESS) keeps the entry's other fields.
	if err := k.Load(structs.Provider(dst, "koanf"), nil); err != nil {
		return fmt.Errorf("load defaults: %w", err)
	}
	environ := src.Environ
	if environ == nil {
		environ = os.Environ
	}
	getenv := func(key string) string {
		v := ""
		for _, kv := range environ() {
			if x, ok := strings.CutPrefix(kv, key+"="); ok {
				v = x
			}
		}
		return v
	}
	path := src.Path
	if path == "" {
		path = getenv(EnvPrefix + "CONFIG")
	}
	if path == "" && src.Name != "" {
		if p := filepath.Join(Home(getenv), src.Name+".yaml"); fileExists(p) {
			path = p
		}
	}
	files, err := yamlFiles(path)
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := k.Load(file.Provider(f), yaml.Parser()); err != nil {
			return fmt.Errorf("load config file %s: %w", f, err)
		}
	}
	if err := k.Load(env.Provider(".", env.Opt{
		Prefix:      EnvPrefix,
		EnvironFunc: environ,
		TransformFunc: func(key, v string) (string, any) {
			key = strings.ToLower(strings.TrimPrefix(key, EnvPrefix))
			return strings.ReplaceAll(key, "__", "."), v
		},
	}), nil); err != nil {
		return fmt.Errorf("load environment: %w", err)
	}
	if src.Flags != nil {
		// Only flags whose names are config keys (they contain a dot) and that were set.
		fs := pflag.NewFlagSet("config", pflag.ContinueOnError)
		src.Flags.Visit(func(f *pflag.Flag) {
			if strings.Contains(f.Name, ".") {
				fs.AddFlag(f)
			}
		})
		if err := k.Load(posflag.Provider(fs, ".", k), nil); err != nil {
			return fmt.Errorf("load flags: %w", err)
		}
	}
	if err := k.UnmarshalWithConf("", dst, koanf.UnmarshalConf{Tag: "koanf"}); err != nil {
		return fmt.Errorf("decode config: %w", err)
	}
	return nil
}

func yamlFiles(path string) ([]string, error) {
	if path == "" {
		return nil, nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	var out []string
	for _, pat := range []string{"*.yaml", "*.yml"} {
		m, err := filepath.Glob(filepath.Join(path, pat))
		if err != nil {
			return nil, fmt.Errorf("list config dir: %w", err)
		}
		out = append(out, m...)
	}
	sort.Strings(out)
	return out, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// Home returns the Fustor home directory (DESIGN.md §7): $FUSTOR_HOME, else ~/.fustor.
func Home(getenv func(string) string) string {
	if h := getenv("FUSTOR_HOME"); h != "" {
		return h
	}
	if d, err := os.UserHomeDir(); err == nil {
		return filepath.Join(d, ".fustor")
	}
	return ".fustor"
}

package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"unicode"
)

// A key setting (receivers.<id>.api_keys[].key, views.<id>.query_keys[], server.admin_keys[])
// is one of:
//
//	<key>            the key itself
//	sha256:<64 hex>  the key's SHA-256: the configuration never holds the key
//	env:NAME         the key is environment variable NAME
//	file:PATH        the key is the file's content, trailing whitespace trimmed
//
// env: and file: are read when the configuration is validated and when Fusion builds its key
// table, so a reload (SIGHUP, fustor-fusion reload) reads them again: a rotated key file takes
// effect without a restart.
const (
	prefixSHA256 = "sha256:"
	prefixEnv    = "env:"
	prefixFile   = "file:"
)

// Digest is the SHA-256 of an API key: what Fusion keeps and compares, never the key.
type Digest [sha256.Size]byte

// KeyDigest returns the digest of key.
func KeyDigest(key string) Digest { return sha256.Sum256([]byte(key)) }

// ErrDigestOnly is ReadKey's answer for a sha256: setting: only the digest is known.
var ErrDigestOnly = errors.New("the setting holds only the key's SHA-256, not the key")

// ReadKey returns the key a setting names: the literal, the environment variable (env:NAME) or
// the file's content (file:PATH). A sha256: setting answers ErrDigestOnly. Errors never quote
// the key.
func ReadKey(setting string) (string, error) {
	switch {
	case strings.HasPrefix(setting, prefixSHA256):
		if _, err := parseDigest(setting); err != nil {
			return "", err
		}
		return "", ErrDigestOnly
	case strings.HasPrefix(setting, prefixEnv):
		name := strings.TrimPrefix(setting, prefixEnv)
		if name == "" {
			return "", errors.New("env: names no environment variable")
		}
		v, ok := os.LookupEnv(name)
		switch {
		case !ok:
			return "", fmt.Errorf("environment variable %s is not set", name)
		case v == "":
			return "", fmt.Errorf("environment variable %s is empty", name)
		}
		return v, nil
	case strings.HasPrefix(setting, prefixFile):
		return readKeyFile(strings.TrimPrefix(setting, prefixFile))
	case setting == "":
		return "", errors.New("empty key")
	}
	return setting, nil
}

// readKeyFile reads a key file; the trailing newline editors and `echo` add is not part of the
// key.
func readKeyFile(path string) (string, error) {
	if path == "" {
		return "", errors.New("file: names no file")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read key file: %w", err)
	}
	k := strings.TrimRightFunc(string(b), unicode.IsSpace)
	if k == "" {
		return "", fmt.Errorf("key file %s is empty", path)
	}
	return k, nil
}

// ResolveKey returns the digest of the key a setting names (ReadKey; a sha256: setting is the
// digest itself).
func ResolveKey(setting string) (Digest, error) {
	if strings.HasPrefix(setting, prefixSHA256) {
		return parseDigest(setting)
	}
	k, err := ReadKey(setting)
	if err != nil {
		return Digest{}, err
	}
	return KeyDigest(k), nil
}

func parseDigest(setting string) (Digest, error) {
	var d Digest
	h := strings.TrimPrefix(setting, prefixSHA256)
	// The value is not quoted: a key pasted here by mistake stays out of logs.
	// The length first: hex.Decode writes past d for a longer value.
	if len(h) != hex.EncodedLen(len(d)) {
		return Digest{}, fmt.Errorf("sha256: wants %d hex digits (sha256sum of the key)", hex.EncodedLen(len(d)))
	}
	if _, err := hex.Decode(d[:], []byte(h)); err != nil {
		return Digest{}, fmt.Errorf("sha256: wants %d hex digits (sha256sum of the key)", hex.EncodedLen(len(d)))
	}
	return d, nil
}

// KeySet is every key of a configuration as digests: the table Fusion authenticates with.
type KeySet struct {
	// Ingest maps each ingest key to the pipe its sessions join.
	Ingest map[Digest]string
	// Query maps each query key to the views it may read.
	Query map[Digest]map[string]bool
	// Admin holds the admin keys.
	Admin map[Digest]bool
}

// Keys resolves every key setting to its digest, reading env: and file: settings now. The error
// names each setting that cannot be resolved.
func (c *Config) Keys() (KeySet, error) {
	ks, errs := c.resolveKeys()
	return ks, errors.Join(errs...)
}

func (c *Config) resolveKeys() (KeySet, []error) {
	ks := KeySet{Ingest: map[Digest]string{}, Query: map[Digest]map[string]bool{}, Admin: map[Digest]bool{}}
	var errs []error
	resolve := func(where, setting string) (Digest, bool) {
		d, err := ResolveKey(setting)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			return Digest{}, false
		}
		return d, true
	}
	usedBy := map[Digest]string{}
	for _, rid := range slices.Sorted(maps.Keys(c.Receivers)) {
		for i, k := range c.Receivers[rid].APIKeys {
			where := fmt.Sprintf("receivers.%s.api_keys[%d]", rid, i)
			var setting string
			switch {
			case k.Key != "" && k.KeyFile != "":
				errs = append(errs, fmt.Errorf("%s: both key and key_file are set: set one", where))
				continue
			case k.KeyFile != "":
				where, setting = where+".key_file", prefixFile+k.KeyFile
			case k.Key != "":
				where, setting = where+".key", k.Key
			default:
				errs = append(errs, fmt.Errorf("%s: empty key: set key or key_file", where))
				continue
			}
			d, ok := resolve(where, setting)
			if !ok {
				continue
			}
			// One key routing to two pipes would make the route depend on map order.
			if prev, dup := usedBy[d]; dup {
				errs = append(errs, fmt.Errorf("%s: key already used by %s", where, prev))
				continue
			}
			usedBy[d] = where
			ks.Ingest[d] = k.Pipe
		}
	}
	for _, vid := range slices.Sorted(maps.Keys(c.Views)) {
		for i, s := range c.Views[vid].QueryKeys {
			d, ok := resolve(fmt.Sprintf("views.%s.query_keys[%d]", vid, i), s)
			if !ok {
				continue
			}
			if ks.Query[d] == nil {
				ks.Query[d] = map[string]bool{}
			}
			ks.Query[d][vid] = true
		}
	}
	for i, s := range c.Server.AdminKeys {
		if d, ok := resolve(fmt.Sprintf("server.admin_keys[%d]", i), s); ok {
			ks.Admin[d] = true
		}
	}
	return ks, errs
}

package s3d

import (
	"bytes"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/johannesboyne/gofakes3"
)

// Store is an in-memory gofakes3 backend whose buckets keep their keys sorted, so a listing
// seeks to its prefix and marker by binary search and a delimited listing jumps over a common
// prefix's keys: a page costs what it returns, not the keys before it (gofakes3's s3mem walks
// the bucket from its start for a prefix's first page). Truncation is exact: a page is marked
// truncated only if a key under the prefix follows it.
type Store struct {
	mu      sync.RWMutex
	buckets map[string]*bucket
	// now is the time of the next put; it advances by step per put, so every object has a
	// LastModified of its own.
	now  time.Time
	step time.Duration
	// wall, once set, dates puts by the wall clock instead (never earlier than the last put
	// plus step), for demos whose new objects should look new.
	wall bool
}

var _ gofakes3.Backend = (*Store)(nil)

type bucket struct {
	created time.Time
	objs    map[string]*object
	// keys are objs' keys, sorted.
	keys []string
}

// object is immutable once stored: an overwrite stores a new one, so a reader may keep body.
type object struct {
	body  []byte
	meta  map[string]string
	hash  []byte
	mtime time.Time
}

// NewStore returns an empty store whose clock starts at start and advances by step per put.
func NewStore(start time.Time, step time.Duration) *Store {
	return &Store{buckets: map[string]*bucket{}, now: start, step: step}
}

// tick returns the LastModified of a put and advances the clock. The caller holds mu.
func (s *Store) tick() time.Time {
	t := s.now
	if w := time.Now().UTC().Truncate(s.step); s.wall && w.After(t) {
		t = w
	}
	s.now = t.Add(s.step)
	return t
}

// WallClock makes later puts dated by the wall clock.
func (s *Store) WallClock() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wall = true
}

func (s *Store) ListBuckets() ([]gofakes3.BucketInfo, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]gofakes3.BucketInfo, 0, len(s.buckets))
	for name, b := range s.buckets {
		out = append(out, gofakes3.BucketInfo{Name: name, CreationDate: gofakes3.NewContentTime(b.created)})
	}
	slices.SortFunc(out, func(a, b gofakes3.BucketInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// ListBucket lists one page of name's keys under prefix, after page.Marker.
func (s *Store) ListBucket(name string, prefix *gofakes3.Prefix, page gofakes3.ListBucketPage) (*gofakes3.ObjectList, error) {
	var pre, delim string
	if prefix != nil {
		if prefix.HasPrefix {
			pre = prefix.Prefix
		}
		if prefix.HasDelimiter {
			delim = prefix.Delimiter
		}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	b := s.buckets[name]
	if b == nil {
		return nil, gofakes3.BucketNotFound(name)
	}
	keys := b.keys
	i := sort.SearchStrings(keys, pre)
	// lastCP is the common prefix listed last: a marker that is one (a delimited page ended
	// on it) skips its keys.
	var lastCP string
	if page.Marker != "" {
		i = max(i, sort.Search(len(keys), func(k int) bool { return keys[k] > page.Marker }))
		if delim != "" && strings.HasPrefix(page.Marker, pre) && strings.HasSuffix(page.Marker, delim) {
			lastCP = page.Marker
		}
	}
	// past returns the first index from i on whose key is not under cp.
	past := func(i int, cp string) int {
		return i + sort.Search(len(keys)-i, func(k int) bool {
			return !strings.HasPrefix(keys[i+k], cp)
		})
	}
	out := gofakes3.NewObjectList()
	var n int64
	for i < len(keys) && strings.HasPrefix(keys[i], pre) {
		if page.MaxKeys > 0 && n >= page.MaxKeys {
			out.IsTruncated = true
			break
		}
		key := keys[i]
		if delim != "" {
			if j := strings.Index(key[len(pre):], delim); j >= 0 {
				cp := key[:len(pre)+j+len(delim)]
				i = past(i, cp)
				if cp == lastCP {
					continue
				}
				out.AddPrefix(cp)
				out.NextMarker, lastCP = cp, cp
				n++
				continue
			}
		}
		o := b.objs[key]
		out.Add(&gofakes3.Content{
			Key:          key,
			LastModified: gofakes3.NewContentTime(o.mtime),
			ETag:         gofakes3.FormatETag(o.hash),
			Size:         int64(len(o.body)),
		})
		out.NextMarker = key
		n++
		i++
	}
	if !out.IsTruncated {
		out.NextMarker = ""
	}
	return out, nil
}

func (s *Store) CreateBucket(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.buckets[name] != nil {
		return gofakes3.ResourceError(gofakes3.ErrBucketAlreadyExists, name)
	}
	s.buckets[name] = &bucket{created: s.now, objs: map[string]*object{}}
	return nil
}

func (s *Store) BucketExists(name string) (bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.buckets[name] != nil, nil
}

func (s *Store) DeleteBucket(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[name]
	switch {
	case b == nil:
		return gofakes3.BucketNotFound(name)
	case len(b.keys) > 0:
		return gofakes3.ResourceError(gofakes3.ErrBucketNotEmpty, name)
	}
	delete(s.buckets, name)
	return nil
}

func (s *Store) ForceDeleteBucket(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.buckets[name] == nil {
		return gofakes3.BucketNotFound(name)
	}
	delete(s.buckets, name)
	return nil
}

// get returns the object at key in name. The caller holds mu.
func (s *Store) get(name, key string) (*object, error) {
	b := s.buckets[name]
	if b == nil {
		return nil, gofakes3.BucketNotFound(name)
	}
	o := b.objs[key]
	if o == nil {
		return nil, gofakes3.KeyNotFound(key)
	}
	return o, nil
}

func (s *Store) GetObject(name, key string, rng *gofakes3.ObjectRangeRequest) (*gofakes3.Object, error) {
	s.mu.RLock()
	o, err := s.get(name, key)
	s.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	r, err := rng.Range(int64(len(o.body)))
	if err != nil {
		return nil, err
	}
	data := o.body
	if r != nil {
		data = data[r.Start : r.Start+r.Length]
	}
	return &gofakes3.Object{Name: key, Metadata: o.meta, Size: int64(len(o.body)), Hash: o.hash, Range: r,
		Contents: io.NopCloser(bytes.NewReader(data))}, nil
}

func (s *Store) HeadObject(name, key string) (*gofakes3.Object, error) {
	s.mu.RLock()
	o, err := s.get(name, key)
	s.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	return &gofakes3.Object{Name: key, Metadata: o.meta, Size: int64(len(o.body)), Hash: o.hash,
		Contents: io.NopCloser(bytes.NewReader(nil))}, nil
}

func (s *Store) PutObject(name, key string, meta map[string]string, input io.Reader, size int64, cond *gofakes3.PutConditions) (gofakes3.PutObjectResult, error) {
	var res gofakes3.PutObjectResult
	// Read the body before taking the lock: a slow client must not hold every listing up.
	body, err := gofakes3.ReadAll(input, size)
	if err != nil {
		return res, err
	}
	sum := md5.Sum(body)
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[name]
	if b == nil {
		return res, gofakes3.BucketNotFound(name)
	}
	if cond != nil {
		info := &gofakes3.ConditionalObjectInfo{}
		if o := b.objs[key]; o != nil {
			info.Exists, info.Hash = true, o.hash
		}
		if err := gofakes3.CheckPutConditions(cond, info); err != nil {
			return res, err
		}
	}
	b.put(key, &object{body: body, meta: meta, hash: sum[:], mtime: s.tick()})
	return res, nil
}

// put stores o at key, keeping keys sorted.
func (b *bucket) put(key string, o *object) {
	if _, ok := b.objs[key]; !ok {
		i, _ := slices.BinarySearch(b.keys, key)
		b.keys = slices.Insert(b.keys, i, key)
	}
	b.objs[key] = o
}

// rm deletes key, if it is there.
func (b *bucket) rm(key string) {
	if _, ok := b.objs[key]; !ok {
		return
	}
	delete(b.objs, key)
	if i, ok := slices.BinarySearch(b.keys, key); ok {
		b.keys = slices.Delete(b.keys, i, i+1)
	}
}

// DeleteObject deletes key; deleting a missing key succeeds, as in S3.
func (s *Store) DeleteObject(name, key string) (gofakes3.ObjectDeleteResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[name]
	if b == nil {
		return gofakes3.ObjectDeleteResult{}, gofakes3.BucketNotFound(name)
	}
	b.rm(key)
	return gofakes3.ObjectDeleteResult{}, nil
}

func (s *Store) DeleteMulti(name string, keys ...string) (gofakes3.MultiDeleteResult, error) {
	var res gofakes3.MultiDeleteResult
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[name]
	if b == nil {
		return res, gofakes3.BucketNotFound(name)
	}
	for _, k := range keys {
		b.rm(k)
		res.Deleted = append(res.Deleted, gofakes3.ObjectID{Key: k})
	}
	return res, nil
}

func (s *Store) CopyObject(srcBucket, srcKey, dstBucket, dstKey string, meta map[string]string) (gofakes3.CopyObjectResult, error) {
	return gofakes3.CopyObject(s, srcBucket, srcKey, dstBucket, dstKey, meta)
}

// Seed stores n generated objects in name: key i is t<i%10>/m<i/10%10>/l<i/100%10>/obj-<i>.dat
// (10 × 10 × 10 nested prefixes), i%4096 bytes of 'x', LastModified one clock step after key
// i-1's. The keys are sorted once at the end, not per put.
func (s *Store) Seed(name string, n int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[name]
	if b == nil {
		return gofakes3.BucketNotFound(name)
	}
	if n < 0 {
		return errors.New("seed: negative object count")
	}
	// Every seeded body is a prefix of one shared array, and bodies are never written: a
	// seeded bucket costs its keys, not its bytes.
	fill := bytes.Repeat([]byte("x"), seedSizes)
	sums := make(map[int][]byte, min(n, seedSizes))
	for i := range n {
		size := i % seedSizes
		sum := sums[size]
		if sum == nil {
			h := md5.Sum(fill[:size])
			sum = h[:]
			sums[size] = sum
		}
		key := SeedKey(i)
		if _, ok := b.objs[key]; !ok {
			b.keys = append(b.keys, key)
		}
		b.objs[key] = &object{body: fill[:size:size], hash: sum, mtime: s.tick()}
	}
	slices.Sort(b.keys)
	return nil
}

// seedSizes bounds a seeded object's size: object i has i%seedSizes bytes.
const seedSizes = 4096

// SeedKey is the key of seeded object i.
func SeedKey(i int) string {
	return fmt.Sprintf("t%d/m%d/l%d/obj-%06d.dat", i%10, i/10%10, i/100%10, i)
}

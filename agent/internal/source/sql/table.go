package sql

import (
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/fustor/fustor/agent/internal/source"
)

// cursorKind is how a cursor value becomes an index and back.
type cursorKind int

const (
	cursorTime cursorKind = iota // timestamp, timestamptz, date: ms since the epoch
	cursorInt                    // smallint, integer, bigint: the number
)

// table is what the source knows of its table: the columns it reads and its statements. The
// select list is the key columns, the cursor, the deleted flag, then the fields.
type table struct {
	fields []string
	keys   int
	kind   cursorKind
	// list, listAfter: a listing page from the start and after a key; followFrom, followAfter:
	// a poll from an index and after a (cursor, key) position; maxCursor: LastIndex.
	list, listAfter, followFrom, followAfter, maxCursor string
}

// table returns the table's description, reading it from the catalog when not known.
func (s *Source) table(ctx context.Context) (*table, error) {
	s.mu.Lock()
	t := s.meta
	s.mu.Unlock()
	if t != nil {
		return t, nil
	}
	t, err := s.describe(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.meta = t
	s.mu.Unlock()
	return t, nil
}

// describe reads the table's columns and builds its statements.
func (s *Source) describe(ctx context.Context) (*table, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	ident, err := tableIdent(s.cfg.Table)
	if err != nil {
		return nil, err
	}
	s.c.queries.Add(1)
	rows, err := s.db.QueryContext(ctx, `SELECT a.attname, t.typname, a.attnotnull, c.relkind
		FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid JOIN pg_class c ON c.oid = a.attrelid
		WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, ident.Sanitize())
	if err != nil {
		s.c.failures.Add(1)
		return nil, fmt.Errorf("describe table %s: %w", s.cfg.Table, err)
	}
	defer rows.Close()
	var names []string
	types := map[string]string{}
	notNull := map[string]bool{}
	var kind string
	for rows.Next() {
		var n, typ string
		var nn bool
		if err := rows.Scan(&n, &typ, &nn, &kind); err != nil {
			s.c.failures.Add(1)
			return nil, fmt.Errorf("describe table %s: %w", s.cfg.Table, err)
		}
		names = append(names, n)
		types[n], notNull[n] = typ, nn
	}
	if err := rows.Err(); err != nil {
		s.c.failures.Add(1)
		return nil, fmt.Errorf("describe table %s: %w", s.cfg.Table, err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("describe table %s: no columns", s.cfg.Table)
	}
	fields := s.cfg.Columns
	if len(fields) == 0 {
		fields = names
	}
	for _, c := range slices.Concat(s.cfg.KeyColumns, []string{s.cfg.CursorColumn}, fields) {
		if _, ok := types[c]; !ok {
			return nil, fmt.Errorf("table %s has no column %q", s.cfg.Table, c)
		}
	}
	if sd := s.cfg.SoftDeleteColumn; sd != "" {
		if _, ok := types[sd]; !ok {
			return nil, fmt.Errorf("table %s has no column %q", s.cfg.Table, sd)
		}
	}
	// A NULL key part would make two rows one key (('x', NULL) and ('x', '') are both "x/")
	// and hide rows from the keyset pages (a row comparison with NULL is never true), so a
	// table's key columns must be NOT NULL. A view's columns never say so: its rows with a
	// NULL key part are left out of every statement instead.
	var keyNotNull []string
	for _, k := range s.cfg.KeyColumns {
		if notNull[k] {
			continue
		}
		if kind == "r" || kind == "p" {
			return nil, fmt.Errorf("key column %q of table %s allows NULL: a key column must be NOT NULL (a primary key is)", k, s.cfg.Table)
		}
		keyNotNull = append(keyNotNull, pgx.Identifier{k}.Sanitize()+" IS NOT NULL")
	}
	t := &table{fields: fields, keys: len(s.cfg.KeyColumns)}
	switch typ := types[s.cfg.CursorColumn]; typ {
	case "timestamp", "timestamptz", "date":
		t.kind = cursorTime
	case "int2", "int4", "int8":
		t.kind = cursorInt
	default:
		return nil, fmt.Errorf("cursor column %q is of type %s: want a timestamp, a date or an integer", s.cfg.CursorColumn, typ)
	}
	q := func(c string) string { return pgx.Identifier{c}.Sanitize() }
	keys := make([]string, len(s.cfg.KeyColumns))
	for i, k := range s.cfg.KeyColumns {
		keys[i] = q(k)
	}
	cur := q(s.cfg.CursorColumn)
	deleted := "false"
	if sd := s.cfg.SoftDeleteColumn; sd != "" {
		deleted = fmt.Sprintf("(%s IS NOT NULL AND %s::text NOT IN ('false', '0'))", q(sd), q(sd))
	}
	sel := slices.Concat(keys, []string{cur, deleted})
	for _, f := range fields {
		sel = append(sel, q(f))
	}
	from := " FROM " + ident.Sanitize()
	selectList := "SELECT " + strings.Join(sel, ", ") + from
	keyList := strings.Join(keys, ", ")
	params := func(first, n int) string {
		ps := make([]string, n)
		for i := range ps {
			ps[i] = "$" + strconv.Itoa(first+i)
		}
		return strings.Join(ps, ", ")
	}
	// A time cursor may be infinity or -infinity, which is no index: such a row is listed
	// (index 0, counted) but never polled, and LastIndex is the highest finite value, so that
	// realtime neither fails to start nor, past an infinity, stops seeing finite changes.
	polled := cur + " IS NOT NULL"
	if t.kind == cursorTime {
		polled = "isfinite(" + cur + ")"
	}
	listed := strings.Join(append([]string{"NOT " + deleted}, keyNotNull...), " AND ")
	followed := strings.Join(append([]string{polled}, keyNotNull...), " AND ")
	k := len(keys)
	t.list = fmt.Sprintf("%s WHERE %s ORDER BY %s LIMIT $1", selectList, listed, keyList)
	t.listAfter = fmt.Sprintf("%s WHERE %s AND (%s) > (%s) ORDER BY %s LIMIT $%d", selectList, listed, keyList, params(1, k), keyList, k+1)
	t.followFrom = fmt.Sprintf("%s WHERE %s AND %s >= $1 ORDER BY %s, %s LIMIT $2", selectList, followed, cur, cur, keyList)
	t.followAfter = fmt.Sprintf("%s WHERE %s AND (%s, %s) > (%s) ORDER BY %s, %s LIMIT $%d", selectList, followed, cur, keyList, params(1, k+1), cur, keyList, k+2)
	// Not max(): with a filter, max() reads the whole table; this reads the cursor's index
	// backwards when there is one.
	t.maxCursor = fmt.Sprintf("SELECT %s%s WHERE %s ORDER BY %s DESC LIMIT 1", cur, from, polled, cur)
	return t, nil
}

// index is a cursor value as an index (ok false: not a cursor value). Times before the epoch
// and negative numbers are 0.
func (t *table) index(v any) (uint64, bool) {
	switch x := v.(type) {
	case time.Time:
		return uint64(max(x.UnixMilli(), 0)), true
	case int64:
		return uint64(max(x, 0)), true
	}
	return 0, false
}

// param is an index as a statement parameter of the cursor's type.
func (t *table) param(idx uint64) any {
	if t.kind == cursorTime {
		return time.UnixMilli(int64(min(idx, 1<<62))).UTC()
	}
	return int64(min(idx, 1<<63-1))
}

// page is what one bounded statement returned: its rows, how many it read (rows with a key
// that cannot be sent are read but not kept), and the raw key and cursor values of the last
// one read (the next page's position).
type page struct {
	rows       []source.Row
	n          int
	lastKey    []any
	lastCursor any
}

// query runs one bounded statement.
func (s *Source) query(ctx context.Context, t *table, stmt string, args ...any) (page, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	s.c.queries.Add(1)
	rows, err := s.db.QueryContext(ctx, stmt, args...)
	if err != nil {
		s.failed()
		return page{}, err
	}
	defer rows.Close()
	n := t.keys + 2 + len(t.fields)
	vals := make([]any, n)
	ptrs := make([]any, n)
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var pg page
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			s.failed()
			return page{}, err
		}
		pg.n++
		if r, ok := s.row(t, vals); ok {
			pg.rows = append(pg.rows, r)
		}
	}
	if err := rows.Err(); err != nil {
		s.failed()
		return page{}, err
	}
	if pg.n > 0 {
		// vals holds the last row read (Scan into *any copies bytes): where the next page starts.
		pg.lastKey, pg.lastCursor = slices.Clone(vals[:t.keys]), vals[t.keys]
	}
	s.c.rows.Add(uint64(pg.n))
	return pg, nil
}

// row builds the generic row of one result (ok false: its key is not UTF-8 text, counted).
func (s *Source) row(t *table, vals []any) (source.Row, bool) {
	r := source.Row{Fields: make(map[string]string, len(t.fields))}
	keys := make([]string, t.keys)
	for i := range keys {
		var ok bool
		if keys[i], ok = keyText(vals[i]); !ok {
			// Rewriting the bad bytes would merge keys that differ only there: the row is
			// skipped instead, counted, and the first one logged with its key so that it can
			// be found (every audit meets it again: the rest are debug).
			log := s.log.Debug
			if s.c.badKey.Add(1) == 1 {
				log = s.log.Warn
			}
			log("sql row skipped: its key is not utf-8", zap.String("table", s.cfg.Table), zap.Int("key_column", i),
				zap.String("key_quoted", fmt.Sprintf("%q", fmt.Sprint(vals[i]))))
			return source.Row{}, false
		}
	}
	if len(keys) == 1 {
		r.Key = keys[0]
	} else {
		for i, k := range keys {
			keys[i] = keyEscaper.Replace(k)
		}
		r.Key = strings.Join(keys, "/")
	}
	if vals[t.keys] != nil {
		idx, ok := t.index(vals[t.keys])
		if !ok {
			s.c.badCursor.Add(1)
		}
		r.Index = idx
	}
	if d, ok := vals[t.keys+1].(bool); ok && d {
		r.Delete = true
	}
	for i, f := range t.fields {
		if v, ok := s.text(vals[t.keys+2+i]); ok {
			r.Fields[f] = v
		}
	}
	return r, true
}

// keyEscaper escapes the parts of a composite key so that joined by "/" they stay apart.
var keyEscaper = strings.NewReplacer("%", "%25", "/", "%2F")

// keyText renders a key column's value (ok false: text that is not UTF-8). Bytes are as a
// field's, except that UTF-8 bytes have "\" doubled, so that they never read as the hex of
// bytes that are not UTF-8 (the byte 0xff is \xff, the four characters \xff are \\xff).
func keyText(v any) (string, bool) {
	switch x := v.(type) {
	case []byte:
		if utf8.Valid(x) {
			return strings.ReplaceAll(string(x), `\`, `\\`), true
		}
		return `\x` + hex.EncodeToString(x), true
	}
	out, _ := render(v)
	return out, utf8.ValidString(out)
}

// text renders a column value as a field (ok false: NULL). Text that is not UTF-8 (a database
// of another encoding) has the bad bytes replaced, counted; bytes that are not UTF-8 are hex.
func (s *Source) text(v any) (string, bool) {
	out, ok := render(v)
	if ok && !utf8.ValidString(out) {
		s.c.badText.Add(1)
		out = strings.ToValidUTF8(out, "\uFFFD")
	}
	return out, ok
}

// render is a column value as text, as it is (ok false: NULL).
func render(v any) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "", false
	case string:
		return x, true
	case []byte:
		if utf8.Valid(x) {
			return string(x), true
		}
		return `\x` + hex.EncodeToString(x), true
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), true
	case bool:
		return strconv.FormatBool(x), true
	default:
		return fmt.Sprint(x), true
	}
}

// listPage is one listing page after the key after (nil: the first page).
func (s *Source) listPage(ctx context.Context, t *table, after []any) (page, error) {
	if after == nil {
		return s.query(ctx, t, t.list, s.cfg.PageSize)
	}
	return s.query(ctx, t, t.listAfter, append(slices.Clone(after), s.cfg.PageSize)...)
}

// followPos is where a Follow is: from an index until its first row, then after the (cursor,
// key) of the last row it read, so rows sharing a cursor value are neither lost nor repeated.
type followPos struct {
	from   uint64
	cursor any
	key    []any
}

// followPage is one poll of at most n rows from pos, and the position after them.
func (s *Source) followPage(ctx context.Context, t *table, pos followPos, n int) (page, followPos, error) {
	var pg page
	var err error
	if pos.key == nil {
		pg, err = s.query(ctx, t, t.followFrom, t.param(pos.from), n)
	} else {
		pg, err = s.query(ctx, t, t.followAfter, append([]any{pos.cursor}, append(slices.Clone(pos.key), n)...)...)
	}
	if err != nil || pg.n == 0 {
		return pg, pos, err
	}
	for i := range pg.rows {
		if pg.rows[i].Delete {
			s.c.deletes.Add(1)
		}
	}
	return pg, followPos{from: pos.from, cursor: pg.lastCursor, key: pg.lastKey}, nil
}

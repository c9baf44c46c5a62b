package ctl

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// Rows views (driver rows): `rows [VIEW]` lists rows, `row [VIEW] KEY` reads one. VIEW is
// positional, or --view, or the only view the key can read.

// defaultRowsLimit is how many rows `rows` prints without --limit or --all.
const defaultRowsLimit = 1000

func (c *client) rowsCommand(ctx context.Context, cmd string, args []string) error {
	want := 1 // rows: [VIEW]
	if cmd == "row" {
		want = 2 // row: [VIEW] KEY
	}
	switch {
	case len(args) > want:
		return fmt.Errorf("%w: unexpected arguments %s", errUsage, strings.Join(args[want:], " "))
	case len(args) == want:
		c.o.view, args = args[0], args[1:]
	}
	if err := c.resolveView(ctx); err != nil {
		return err
	}
	if cmd == "row" {
		if len(args) != 1 || args[0] == "" {
			return fmt.Errorf("%w: row needs a KEY: fustorctl row VIEW KEY", errUsage)
		}
		return c.row(ctx, args[0])
	}
	return c.rows(ctx)
}

func (c *client) row(ctx context.Context, key string) error {
	resp, err := c.api.GetRow(ctx, &fustorv1.GetRowRequest{View: c.o.view, Key: key})
	if err != nil {
		return err
	}
	return c.print(resp, func(w io.Writer) {
		r := resp.GetRow()
		fmt.Fprintf(w, "key\t%s\nindex\t%d\norigin\t%s\nupdated\t%s\n", r.GetKey(), r.GetIndex(), origin(r.GetOrigin()), ts(r.GetUpdatedAt()))
		for _, f := range slices.Sorted(maps.Keys(r.GetFields())) {
			fmt.Fprintf(w, "%s\t%s\n", f, r.GetFields()[f])
		}
	})
}

// rows prints up to --limit rows (default 1000; --all: every row), following the pages, then
// says on stderr when more remain.
func (c *client) rows(ctx context.Context) error {
	req := &fustorv1.ListRowsRequest{View: c.o.view, Prefix: c.o.prefix}
	if c.o.where != "" {
		f, v, ok := strings.Cut(c.o.where, "=")
		if !ok || f == "" {
			return fmt.Errorf("%w: --where wants FIELD=VALUE, not %q", errUsage, c.o.where)
		}
		req.WhereField, req.WhereValue = f, v
	}
	limit := c.o.limit
	switch {
	case c.o.all:
		limit = 0
	case limit <= 0:
		limit = defaultRowsLimit
	}
	if limit > 0 {
		req.PageSize = uint32(min(limit, 10000))
	}
	if c.o.pageSize > 0 {
		req.PageSize = uint32(c.o.pageSize)
	}
	out := &fustorv1.ListRowsResponse{}
	more := false
	for r, err := range c.api.Rows(ctx, req) {
		if err != nil {
			return err
		}
		if limit > 0 && len(out.Rows) == limit {
			more = true
			break
		}
		out.Rows = append(out.Rows, r)
	}
	err := c.print(out, func(w io.Writer) {
		fmt.Fprintln(w, "KEY\tINDEX\tORIGIN\tFIELDS")
		for _, r := range out.GetRows() {
			fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", r.GetKey(), r.GetIndex(), origin(r.GetOrigin()), fieldList(r.GetFields()))
		}
	})
	if more {
		fmt.Fprintf(c.errOut, "fustorctl: more rows than --limit %d: raise it, or --all\n", limit)
	}
	return err
}

// fieldList renders fields as "name=value" pairs sorted by name, values quoted when they hold
// a space, a quote or an equals sign.
func fieldList(f map[string]string) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(f)) {
		if i > 0 {
			b.WriteByte(' ')
		}
		v := f[k]
		if v == "" || strings.ContainsAny(v, " \t\"=\n") {
			v = fmt.Sprintf("%q", v)
		}
		b.WriteString(k + "=" + v)
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()
}

func origin(s fustorv1.MessageSource) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "MESSAGE_SOURCE_"))
}

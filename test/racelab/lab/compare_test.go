package lab

import (
	"strings"
	"testing"
)

// netnsCatalogue is the netns backend's modes (the cluster's lack c′ and
// glibc-getent, and add musl-gai-fork).
var netnsCatalogue = []Mode{
	{Name: "off", Label: "a", Clients: []string{"glibc-gai", "musl-gai"}},
	{Name: "dnsconfig", Label: "b", Clients: []string{"glibc-gai", "musl-gai"}},
	{Name: "sidecar", Label: "c", Clients: []string{"glibc-gai", "musl-gai"}},
	{Name: "sidecar-nofallback", Label: "c′", Clients: []string{"glibc-gai", "musl-gai"}},
}

// goodRows are rows as a correct lab measures them.
func goodRows() []Row {
	return []Row{
		row("off", "glibc-gai", 10, 2, 10, 1, 5002),
		row("off", "musl-gai", 10, 0.3, 10, 1, 2502),
		row("dnsconfig", "glibc-gai", 10, 2, 0, 0),
		row("dnsconfig", "musl-gai", 10, 0.3, 10, 1, 667),
		row("sidecar", "glibc-gai", 10, 2, 0, 0),
		row("sidecar", "musl-gai", 10, 0.3, 9, 1),
		row("sidecar-nofallback", "glibc-gai", 10, 2, 0, 0),
		row("sidecar-nofallback", "musl-gai", 10, 0.3, 0, 0),
	}
}

func allOf(cat []Mode) Options {
	var o Options
	for _, m := range cat {
		o.Modes = append(o.Modes, m.Name)
	}
	o.Clients = []string{"glibc-gai", "musl-gai"}
	return o
}

// marks is the comparisons' marks, and their texts for failure messages.
func marks(cs []Check) (pass, fail, skip int, texts string) {
	for _, c := range cs {
		switch c.Mark() {
		case "PASS":
			pass++
		case "FAIL":
			fail++
		default:
			skip++
		}
		texts += "\n  " + c.Mark() + ": " + c.Text
	}
	return pass, fail, skip, texts
}

// Shown to fail: treating every absent row as left out by the subset fails
// "asked-for default row missing"; dropping the default row's stall from the
// fix comparison fails "default row without stall".
func TestCompareRows(t *testing.T) {
	without := func(rows []Row, mode, client string) []Row {
		var out []Row
		for _, r := range rows {
			if r.Mode != mode || r.Client != client {
				out = append(out, r)
			}
		}
		return out
	}
	replace := func(rows []Row, r Row) []Row {
		return append(without(rows, r.Mode, r.Client), r)
	}
	full := allOf(netnsCatalogue)
	sub := Options{Modes: []string{"sidecar"}, Clients: full.Clients, Subset: true}
	for _, tc := range []struct {
		name             string
		rows             []Row
		o                Options
		pass, fail, skip int
		want             string // in some check's text
	}{
		// dnsconfig×glibc, sidecar×2, nofallback×2 against the default;
		// dnsconfig×musl shorter; the fallback comparison for musl.
		{"full set, correct rows", goodRows(), full, 7, 0, 0, "0 lookups over 1 s, against 1 in the default row"},
		// A fix row proves nothing when its control did not stall.
		{"default row without stall", replace(goodRows(), row("off", "glibc-gai", 10, 2, 0, 0)), full, 4, 3, 0, "against 0 in the default row"},
		{"dnsconfig musl as slow as the default", replace(goodRows(), row("dnsconfig", "musl-gai", 10, 0.3, 10, 1, 2600)), full, 6, 1, 0, "shorter than every stall"},
		{"musl collides without the fallback", replace(goodRows(), row("sidecar-nofallback", "musl-gai", 10, 0.3, 3, 0)), full, 6, 1, 0, "fallback nameserver"},
		// A row that was asked for and is missing fails, naming it.
		{"asked-for default row missing", without(goodRows(), "off", "musl-gai"), full, 4, 3, 0, "row off × musl-gai missing"},
		// RACE_MODES=sidecar: the sidecar rows' comparisons with the default
		// and the fallback one lack a row: listed as SKIP, never PASS; those
		// of modes not asked for at all are not listed.
		{"subset sidecar", nil, sub, 0, 0, 3, `lacks row off × glibc-gai`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows := tc.rows
			if tc.o.Subset {
				// What the lab runs for the subset: the sidecar rows only.
				rows = nil
				for _, r := range goodRows() {
					if r.Mode == "sidecar" {
						rows = append(rows, r)
					}
				}
			}
			cs := compareRows(rows, netnsCatalogue, tc.o)
			p, f, s, texts := marks(cs)
			if p != tc.pass || f != tc.fail || s != tc.skip {
				t.Errorf("pass/fail/skip %d/%d/%d, want %d/%d/%d:%s", p, f, s, tc.pass, tc.fail, tc.skip, texts)
			}
			if !strings.Contains(texts, tc.want) {
				t.Errorf("no check says %q:%s", tc.want, texts)
			}
		})
	}
}

// The cluster catalogue has no c′: the fallback comparison does not apply
// (neither PASS nor SKIP), while the others do for each of its clients.
func TestCompareRowsCatalogue(t *testing.T) {
	cat := []Mode{
		{Name: "off", Label: "a", Clients: []string{"musl-gai-fork"}},
		{Name: "sidecar", Label: "c", Clients: []string{"musl-gai-fork"}},
	}
	rows := []Row{row("off", "musl-gai-fork", 10, 0.3, 10, 1, 2502), row("sidecar", "musl-gai-fork", 10, 0.3, 9, 1)}
	cs := compareRows(rows, cat, Options{Modes: []string{"off", "sidecar"}, Clients: []string{"musl-gai-fork"}})
	if p, f, s, texts := marks(cs); p != 1 || f != 0 || s != 0 {
		t.Errorf("pass/fail/skip %d/%d/%d, want 1/0/0:%s", p, f, s, texts)
	}
}

func TestFromEnv(t *testing.T) {
	cat := netnsCatalogue
	for _, tc := range []struct {
		name, modes, clients, docs string
		want                       []string
		subset                     bool
		err                        string
	}{
		{name: "all", want: []string{"off", "dnsconfig", "sidecar", "sidecar-nofallback"}},
		{name: "default is off, catalogue order", modes: "sidecar,default", want: []string{"off", "sidecar"}, subset: true},
		{name: "spaces", modes: "off dnsconfig", want: []string{"off", "dnsconfig"}, subset: true},
		{name: "clients narrow too", clients: "musl-gai", want: []string{"off", "dnsconfig", "sidecar", "sidecar-nofallback"}, subset: true},
		{name: "unknown mode", modes: "off,sidecars", err: `RACE_MODES: unknown "sidecars"`},
		{name: "docs need every row", modes: "off", docs: "1", err: "RACE_DOCS=1 needs every row"},
		{name: "docs value", docs: "yes", err: `RACE_DOCS="yes"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("RACE_MODES", tc.modes)
			t.Setenv("RACE_CLIENTS", tc.clients)
			t.Setenv("RACE_DOCS", tc.docs)
			o, err := FromEnv(cat, 300, "/out", "make race-lab")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(o.Modes, " ") != strings.Join(tc.want, " ") || o.Subset != tc.subset || o.N != 100 || o.Every != 10 || o.ProbeN != 300 {
				t.Errorf("got %+v", o)
			}
		})
	}
	t.Setenv("RACE_MODES", "")
	t.Setenv("RACE_N", "0")
	if _, err := FromEnv(cat, 300, "/out", ""); err == nil || !strings.Contains(err.Error(), "RACE_N") {
		t.Errorf("RACE_N=0: %v, want an error naming RACE_N", err)
	}
}

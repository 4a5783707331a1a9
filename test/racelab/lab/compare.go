package lab

import (
	"fmt"
	"slices"
	"strings"
)

// A comparison asserts something about two rows together: that a fix is
// measured against a default row that did stall, that a setting shortens a
// stall, that a nameserver is what exposes a pair. It names the rows it
// needs, so a subset of rows never lets it pass without them.
type comparison struct {
	needs []rowKey
	check func(rows map[rowKey]Row) (ok bool, text string)
}

type rowKey struct{ mode, client string }

func (k rowKey) String() string { return k.mode + " × " + k.client }

// comparisons are the catalogue's comparisons: every (mode, client) the
// catalogue has for both rows of one.
func comparisons(catalogue []Mode) []comparison {
	has := func(mode, client string) bool {
		i := slices.IndexFunc(catalogue, func(m Mode) bool { return m.Name == mode })
		return i >= 0 && slices.Contains(catalogue[i].Clients, client)
	}
	var cs []comparison
	for _, m := range catalogue {
		for _, c := range m.Clients {
			def, fix := rowKey{"off", c}, rowKey{m.Name, c}
			e, err := expect(m.Name, c)
			if m.Name == "off" || err != nil || e.Control || !has("off", c) {
				continue
			}
			d, _ := expect("off", c)
			switch {
			case e.StallMS == 0:
				// A row without stalls proves a fix only if the same client
				// stalls without it, in the same run.
				cs = append(cs, comparison{needs: []rowKey{def, fix}, check: func(rows map[rowKey]Row) (bool, string) {
					df, fx := Summarize(rows[def].Lookups), Summarize(rows[fix].Lookups)
					return df.Over1s >= 1 && fx.Over1s == 0, fmt.Sprintf("%s × %s: %d lookups over 1 s, against %d in the default row (%s) of the same run (want 0 against at least 1)",
						rows[fix].Label, c, fx.Over1s, df.Over1s, rows[def].Label)
				}})
			case e.StallMS < d.StallMS:
				cs = append(cs, comparison{needs: []rowKey{def, fix}, check: func(rows map[rowKey]Row) (bool, string) {
					shortest := 0.0
					for _, l := range rows[def].Lookups {
						if l.MS >= 0.9*d.StallMS && (shortest == 0 || l.MS < shortest) {
							shortest = l.MS
						}
					}
					slowest := Summarize(rows[fix].Lookups).Max
					return shortest > 0 && slowest < shortest, fmt.Sprintf("%s × %s: slowest lookup %.0f ms, shorter than every stall of the default row (shortest %.0f ms): the setting shortens %s's stall, it does not remove it",
						rows[fix].Label, c, slowest, shortest, strings.SplitN(c, "-", 2)[0])
				}})
			}
		}
	}
	for _, m := range catalogue {
		if m.Name != "sidecar" {
			continue
		}
		for _, c := range m.Clients {
			if !strings.HasPrefix(c, "musl") || !has("sidecar-nofallback", c) {
				continue
			}
			with, without := rowKey{"sidecar", c}, rowKey{"sidecar-nofallback", c}
			// musl asks every nameserver at once: with the Service IP as
			// fallback its pair crosses the node (and collides, harmlessly);
			// without, nothing does.
			cs = append(cs, comparison{needs: []rowKey{with, without}, check: func(rows map[rowKey]Row) (bool, string) {
				return rows[with].Collisions > 0 && rows[without].Collisions == 0, fmt.Sprintf("%s: the fallback nameserver is what sends musl's pair across the node: %d colliding packets with it (%s), %d without (%s)",
					c, rows[with].Collisions, rows[with].Label, rows[without].Collisions, rows[without].Label)
			}})
		}
	}
	return cs
}

// compareRows runs the catalogue's comparisons on rows. One whose row the
// options left out is a SKIP naming it (or not listed, when the subset has
// none of its rows); one whose row was asked for but is missing (it did not
// run) fails.
func compareRows(rows []Row, catalogue []Mode, o Options) []Check {
	byKey := map[rowKey]Row{}
	for _, r := range rows {
		byKey[rowKey{r.Mode, r.Client}] = r
	}
	var out []Check
	for _, c := range comparisons(catalogue) {
		var skipped, missing []string
		measured := 0
		for _, k := range c.needs {
			if _, ok := byKey[k]; ok {
				measured++
				continue
			}
			if !slices.Contains(o.Modes, k.mode) || !slices.Contains(o.Clients, k.client) {
				skipped = append(skipped, k.String())
			} else {
				missing = append(missing, k.String())
			}
		}
		names := make([]string, len(c.needs))
		for i, k := range c.needs {
			names[i] = k.String()
		}
		switch {
		case len(missing) > 0:
			out = append(out, Check{Compare: true, Text: fmt.Sprintf("comparison of %s: row %s missing (asked for, not measured)", strings.Join(names, " and "), strings.Join(missing, ", "))})
		case measured == 0:
			// None of its rows was asked for: nothing to skip.
		case len(skipped) > 0:
			out = append(out, Check{Compare: true, Skip: true, Text: fmt.Sprintf("comparison of %s: the subset (RACE_MODES=%q RACE_CLIENTS=%q) lacks row %s",
				strings.Join(names, " and "), strings.Join(o.Modes, ","), strings.Join(o.Clients, ","), strings.Join(skipped, ", "))})
		default:
			ok, text := c.check(byKey)
			out = append(out, Check{Compare: true, OK: ok, Text: text})
		}
	}
	return out
}

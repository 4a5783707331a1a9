package lab

import (
	"slices"
	"testing"
)

// TestGroups: which modes run side by side. Negative control: with groups
// ignoring Group (one run per mode), the first three cases fail (one run per mode).
func TestGroups(t *testing.T) {
	two := []string{"glibc-gai", "musl-gai"}
	modes := []Mode{
		{Name: "off", Clients: two, Group: "g"},
		{Name: "dnsconfig", Clients: two, Group: "g"},
		{Name: "sidecar", Clients: []string{"musl-gai"}, Group: "g"},
		{Name: "nodelocal", Clients: two},
		{Name: "nodelocal-control", Clients: two},
		{Name: "late", Clients: two, Group: "g"},
	}
	all := []string{"off", "dnsconfig", "sidecar", "nodelocal", "nodelocal-control", "late"}
	for _, tc := range []struct {
		name           string
		modes, clients []string
		want           [][]string // mode names per run
	}{
		{"every mode; a group runs where its first mode is", all, two, [][]string{{"off", "dnsconfig", "sidecar", "late"}, {"nodelocal"}, {"nodelocal-control"}}},
		{"a mode left out", []string{"off", "sidecar", "nodelocal"}, two, [][]string{{"off", "sidecar"}, {"nodelocal"}}},
		{"a mode without a selected client is left out", all, []string{"glibc-gai"}, [][]string{{"off", "dnsconfig", "late"}, {"nodelocal"}, {"nodelocal-control"}}},
		{"nothing selected", nil, two, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &Lab{Opts: Options{Modes: tc.modes, Clients: tc.clients}}
			var got [][]string
			for _, g := range l.groups(modes) {
				var names []string
				for _, r := range g {
					names = append(names, r.Mode.Name)
					for _, c := range r.Clients {
						if !slices.Contains(tc.clients, c.Name) {
							t.Errorf("%s runs client %s, not selected", r.Mode.Name, c.Name)
						}
					}
				}
				got = append(got, names)
			}
			if !slices.EqualFunc(got, tc.want, slices.Equal) {
				t.Errorf("runs %q, want %q", got, tc.want)
			}
		})
	}
}

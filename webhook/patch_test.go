package webhook

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"

	jsonpatch5 "github.com/evanphx/json-patch/v5"
	"gomodules.xyz/jsonpatch/v2"
)

// TestSortPatchKeepsArraySemantics diffs arrays that grow and shrink, shuffles
// the ops, sorts them, and checks the patch still turns a into b.
func TestSortPatchKeepsArraySemantics(t *testing.T) {
	docs := [][2]string{
		{`{"a":[1,2,3,4,5,6,7,8,9,10,11,12],"b":{"x":1}}`, `{"a":[1,9],"b":{"y":2},"c":[{"k":1}]}`},
		{`{"a":[{"n":"x"}]}`, `{"a":[{"n":"y","v":"1"},{"n":"z"},{"n":"w"},{"n":"q"},{"n":"r"},{"n":"s"},{"n":"t"},{"n":"u"},{"n":"v"},{"n":"w2"},{"n":"w3"}]}`},
		{`{"s":{"l":[[1,2,3],[4]]}}`, `{"s":{"l":[[1],[4,5,6,7,8,9,10,11,12,13]]}}`},
	}
	for i, d := range docs {
		ops, err := jsonpatch.CreatePatch([]byte(d[0]), []byte(d[1]))
		if err != nil {
			t.Fatal(err)
		}
		for round := range 20 {
			rand.Shuffle(len(ops), func(i, j int) { ops[i], ops[j] = ops[j], ops[i] })
			sortPatch(ops)
			raw, _ := json.Marshal(ops)
			p, err := jsonpatch5.DecodePatch(raw)
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.Apply([]byte(d[0]))
			if err != nil {
				t.Fatalf("doc %d round %d: %v\n%s", i, round, err, raw)
			}
			if !jsonpatch5.Equal(got, []byte(d[1])) {
				t.Fatalf("doc %d round %d: got %s want %s\npatch %s", i, round, got, d[1], raw)
			}
		}
	}
}

// TestBuildPatchDeterministic: equal requests get byte-equal patches.
func TestBuildPatchDeterministic(t *testing.T) {
	raw := []byte(`{"metadata":{"annotations":{"a":"1","b":"2"}},"spec":{"containers":[{"name":"c"}],"dnsConfig":{"nameservers":["1.1.1.1"],"searches":["x","y"],"options":[{"name":"ndots","value":"1"},{"name":"edns0"}]}}}`)
	cfg := testConfig()
	var first string
	for i := range 30 {
		var p = pod()
		_ = json.Unmarshal(raw, p)
		d := Decide(p, testEnv, &cfg)
		ops, err := buildPatch(raw, d)
		if err != nil {
			t.Fatal(err)
		}
		s := fmt.Sprint(ops)
		if i == 0 {
			first = s
		} else if s != first {
			t.Fatalf("patch order changed:\n%s\n%s", first, s)
		}
	}
}

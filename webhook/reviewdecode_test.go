package webhook

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
)

// reviewShapes are reviews where locating request.object bytewise could go
// wrong: keys that encoding/json folds, duplicates, escapes, null and
// non-object values, and bodies that are not JSON only inside the pod.
var reviewShapes = []string{
	`{"request":{"uid":"u","object":{"metadata":{}}}}`,
	`{"request":{"uid":"u","object":null}}`,
	`{"request":{"uid":"u","object":5}}`,
	`{"request":{"uid":"u","object":"s"}}`,
	`{"request":null}`,
	`{"request":{"object":{}},"request":{"uid":"v","object":{"a":1}}}`,
	`{"Request":{"uid":"u","object":{}}}`,
	`{"request":{"uid":"u","Object":{"a":1},"object":{"b":2}}}`,
	`{"request":{"uid":"u","object":{"a":1},"OBJECT":{"b":2}}}`,
	`{"requeſt":{"uid":"u","object":{}}}`,
	`{"request":{"uid":"u","objec\u0074":{"a":1}}}`,
	`{"requ\u0065st":{"uid":"u","object":{"a":1}}}`,
	`{"request":{"uid":"u","object":}}`,
	`{"request":{"uid":"u","object":{"a" 1}}}`,
	`{"request":{"uid":"u","object":{"a":[1}]}}`,
	`{"request":{"uid":"u","object":tru}}`,
	`{"request":{"uid":"u","object":{}}}}`,
	`{"request":{"uid":5,"object":{"a":1}}}`,
	` { "kind" : "AdmissionReview" , "request" : { "object" : { "x" : "}" } , "uid" : "u" } } `,
	`{"request":{"uid":"u","object":{"a":"\"}"},"oldObject":{"b":1}},"response":{"uid":"r","allowed":true}}`,
	`[]`,
	`{}`,
}

// FuzzDecodeReview checks decodeReview against json.Unmarshal: once the
// pending pod bytes are checked as serveMutate checks them, the same
// bodies fail with the same error, and the others decode to the same review.
func FuzzDecodeReview(f *testing.F) {
	for _, r := range reviewShapes {
		f.Add([]byte(r))
	}
	// Nesting beyond encoding/json's limit of 10000 only when counted from
	// the review's root.
	deep := strings.Repeat("[", 9999) + strings.Repeat("]", 9999)
	f.Add([]byte(`{"request":{"uid":"u","object":{"a":` + deep + `}}}`))
	for _, b := range testdataReviews(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var want, got reviewIn
		wantErr := json.Unmarshal(body, &want)
		pending, err := decodeReview(body, &got)
		if err == nil && pending && !objectIsJSON(got.Request.Object) {
			err = malformedReview(body)
		}
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("decodeReview error %v, json.Unmarshal error %v", err, wantErr)
		}
		if err != nil {
			if err.Error() != wantErr.Error() {
				t.Fatalf("decodeReview error %q, json.Unmarshal error %q", err, wantErr)
			}
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decodeReview %+v\njson.Unmarshal %+v", got, want)
		}
	})
}

// TestDecodeReviewLocates makes sure the scan is really used on ordinary
// reviews (else the fuzz test above would pass on the fallback alone).
func TestDecodeReviewLocates(t *testing.T) {
	tests := []struct {
		body    string
		pending bool
	}{
		{`{"request":{"uid":"u","object":{"metadata":{}}}}`, true},
		{`{"request":{"uid":"u","object":null}}`, false},
		{`{"Request":{"uid":"u","object":{}}}`, false},
		{`{"request":{"uid":"u","object":{"a":1},"OBJECT":{"b":2}}}`, false},
	}
	for _, tt := range tests {
		var r reviewIn
		pending, err := decodeReview([]byte(tt.body), &r)
		if err != nil || pending != tt.pending {
			t.Errorf("decodeReview(%s) = pending %v, err %v; want pending %v", tt.body, pending, err, tt.pending)
		}
	}
	b, err := os.ReadFile("testdata/clusterfirst-deployment-pod.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := locateObject(b); !ok {
		t.Errorf("locateObject did not find the pod in an ordinary review")
	}
}

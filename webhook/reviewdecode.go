package webhook

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// Most of a review's bytes are the pod (request.object). encoding/json
// would pass over them twice for the review alone (validating the whole
// document, then skipping the raw value), and the pod's own decode passes
// over them twice more. decodeReview leaves them out of the review's
// decode: a one-pass scan finds them, encoding/json decodes the rest with
// the pod replaced by null, and the pod's bytes are validated later, by
// the pod decode that has to read them anyway.

// decodeReview decodes body into review with the result of
// json.Unmarshal(body, review), except that when pending is true the bytes
// of review.Request.Object have not been checked to be JSON yet: body is
// then valid (and review right) only if they are, which the caller must
// establish (objectIsJSON, or a successful decode of the pod) before it
// answers with anything but a malformed-review error (malformedReview).
func decodeReview(body []byte, review *reviewIn) (pending bool, err error) {
	if start, end, ok := locateObject(body); ok {
		head := make([]byte, 0, len(body)-(end-start)+len("null"))
		head = append(append(append(head, body[:start]...), "null"...), body[end:]...)
		var r reviewIn
		if json.Unmarshal(head, &r) == nil && r.Request != nil {
			*review = r
			if obj := body[start:end]; string(obj) != "null" {
				review.Request.Object = obj
				return true, nil
			}
			return false, nil
		}
		// Not valid with the pod left out either: encoding/json says
		// why, with its own words and offsets.
	}
	return false, json.Unmarshal(body, review)
}

// malformedReview is the error json.Unmarshal gives for body, for a review
// whose pending pod bytes (see decodeReview) turned out not to be JSON.
func malformedReview(body []byte) error {
	if err := json.Unmarshal(body, new(reviewIn)); err != nil {
		return err
	}
	// Unreachable when the pod bytes are invalid; never answer as if valid.
	return &json.SyntaxError{}
}

// objectIsJSON reports whether pending pod bytes are valid JSON.
func objectIsJSON(raw []byte) bool { return json.Valid(raw) }

// locateObject finds the value encoding/json would decode as
// request.object in body: its bytes are body[start:end]. ok is false
// wherever encoding/json's field matching could differ from this bytewise
// scan (keys on the way with escapes or non-ASCII letters, which it
// case-folds; a key that folds to "request" or "object" but is spelt
// otherwise, or appears twice; request not an object) and on anything the
// scan does not expect; decodeReview then decodes the whole body.
func locateObject(body []byte) (start, end int, ok bool) {
	sc := jsonScanner{b: body}
	var seenRequest, seenObject bool
	ok = sc.object(func(key string) bool {
		if !asciiKey(key) {
			return false
		}
		if !strings.EqualFold(key, "request") {
			return sc.skip()
		}
		if key != "request" || seenRequest {
			return false
		}
		seenRequest = true
		return sc.object(func(key string) bool {
			if !asciiKey(key) {
				return false
			}
			if !strings.EqualFold(key, "object") {
				return sc.skip()
			}
			if key != "object" || seenObject {
				return false
			}
			seenObject = true
			start = sc.i
			if !sc.skip() {
				return false
			}
			end = sc.i
			return true
		})
	})
	if !ok || !seenObject || end <= start {
		return 0, 0, false
	}
	sc.ws()
	return start, end, sc.i == len(body)
}

func asciiKey(key string) bool {
	for i := 0; i < len(key); i++ {
		if key[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

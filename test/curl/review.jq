# The checks of one corpus case's /mutate answers (run.sh corpus_case): one
# jq run per step rather than one per check. Each step emits lines
# "PASS<TAB>description", "FAIL<TAB>description<TAB>detail", or
# "NAME<TAB>compact JSON" for the file NAME.json that run.sh writes.

def mark($ok; $desc; $detail):
  if $ok then "PASS\t\($desc)"
  else "FAIL\t\($desc)\t\($detail | tostring | gsub("\t"; " ") | gsub("\n"; "\\n"))" end;

# base64 as encoding/json writes []byte: the standard alphabet, padded.
def strict_base64: type == "string" and (length % 4 == 0) and test("^[A-Za-z0-9+/]*={0,2}$");

# envelope($review): input the answer to $review. Checks the envelope and
# emits the decoded patch ("PATCH", [] when there is none) and the reviewed
# object ("ORIG").
def envelope($review):
  .response as $r
  | (($r.patch // "") | length > 0) as $patched
  | (if $patched and ($r.patch | strict_base64) then (try ($r.patch | @base64d | fromjson) catch null) else null end) as $decoded
  | mark(.apiVersion == "admission.k8s.io/v1" and .kind == "AdmissionReview"; "AdmissionReview v1 envelope"; "apiVersion \(.apiVersion | tojson), kind \(.kind | tojson)"),
    mark($r.uid == $review.request.uid; "UID echoed"; "uid \($r.uid | tojson), want \($review.request.uid | tojson)"),
    mark($r.allowed == true; "allowed (never denied)"; "allowed \($r.allowed | tojson), status \($r.status | tojson)"),
    (if $patched then
      mark($r.patchType == "JSONPatch"; "patchType JSONPatch"; "patchType \($r.patchType | tojson)"),
      mark($decoded | type == "array"; "patch is base64 of a JSON array"; "patch \($r.patch | tojson | .[:120])")
    else empty end),
    "PATCH\t\(if $decoded | type == "array" then $decoded else [] end | tojson)",
    "ORIG\t\($review.request.object | tojson)";

# outcome($golden; $warnings; $case; $uid; $dir): input {review, response,
# pod, patched}. Compares the patched object with the golden and the warnings,
# one per line, with the warnings golden ($warnings null: there is none, so
# there must be no warning); when patched, emits the patched pod as a new
# review with uid $uid ("AGAIN").
def outcome($golden; $warnings; $case; $uid; $dir):
  . as $in
  | (($in.response.response.warnings // []) | map(tostring + "\n") | add // "") as $got
  | mark($in.pod == $golden; "patched object equals \($case).golden.json"; "diff in \($dir)/golden.diff"),
    (if $warnings == null then
      mark($got == ""; "no warnings (no \($case).warnings.golden.txt)"; "got: \($got)")
    else
      mark($got == $warnings; "warnings equal \($case).warnings.golden.txt"; "got: \($got)")
    end),
    (if $in.patched then "AGAIN\t\($in.review | .request.uid = $uid | .request.object = $in.pod | tojson)" else empty end);

# again($uid): input the answer to the "AGAIN" review.
def again($uid):
  mark(.response.uid == $uid and .response.allowed == true and ((.response.patch // "") | length) == 0;
    "idempotent (patched pod re-reviewed: allowed, own UID, no patch)";
    "uid \(.response.uid | tojson), allowed \(.response.allowed | tojson), patch \(.response.patch // "" | .[:120])");

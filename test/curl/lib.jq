# Helpers for the /explain expressions in test/curl/explain.checks.
#
# Each expression is evaluated against one document built by run.sh:
#   .orig      the Pod posted to /explain (the object of a corpus review)
#   .response  the explain JSON (mode, reason, patch, resolvConf, before, warnings)
#   .patch     its patch (array), or [] when there was none
#   .pod       .orig with .patch applied by evanphx/json-patch (the API server's library)
# Whether a patched pod is valid is not decided here: test/quota dry-run
# creates every golden pod of the corpus on a real kube-apiserver.

def warnings: (.response.warnings // []);
# warned(re): some warning matches the case-insensitive regex re.
def warned(re): any(warnings[]; test(re; "i"));
def unpatched: (.patch | length) == 0;

def nameservers: (.pod.spec.dnsConfig.nameservers // []);
def searches: (.pod.spec.dnsConfig.searches // []);

# The search path the kubelet gives a ClusterFirst pod, in this order.
def cluster_searches(ns; domain): [ns + ".svc." + domain, "svc." + domain, domain];

def resolver: [.pod.spec.initContainers[]? | select(.name == "dnsguard-resolver")][0];
def resolver_first: (.pod.spec.initContainers // [])[0].name == "dnsguard-resolver";

# The resolv.conf the pod will get, parsed the way a resolver would.
def rc_lines(k): [(.response.resolvConf // "") | split("\n")[] | select(test("^\\s*" + k + "(\\s|$)")) | sub("^\\s*" + k + "\\s*"; "") | sub("\\s+$"; "")];
def rc_words(k): [rc_lines(k)[] | split(" ")[] | select(. != "")];
def rc_nameservers: rc_lines("nameserver");
def rc_search: rc_words("search");
def rc_options: rc_words("options");

# Helpers for the check expressions in test/curl/checks/*.checks.
#
# Each check is evaluated against one document built by run.sh:
#   .req       the file that was posted (an AdmissionReview, or for /explain the Pod)
#   .orig      the object under review (.req.request.object, or the Pod posted to /explain)
#   .response  the AdmissionResponse (/mutate) or the explain JSON (/explain)
#   .patch     the decoded JSONPatch (array), or [] when there was none
#   .pod       .orig with .patch applied by evanphx/json-patch (the API server's library)
#   .again     for patched pods: the AdmissionResponse to a NEW review of .pod
#   .ns        the namespace of the request (request.namespace or ?namespace=)
# The expected values in the checks come from issue 2 and the contracts, never
# from the webhook's output.

def warnings: (.response.warnings // []);
# warned(re): some admission warning matches the case-insensitive regex re.
def warned(re): any(warnings[]; test(re; "i"));
def patched: (.patch | length) > 0;
def unpatched: (.patch | length) == 0;

def nameservers: (.pod.spec.dnsConfig.nameservers // []);
def searches: (.pod.spec.dnsConfig.searches // []);
def options: (.pod.spec.dnsConfig.options // []);
def option(n): [options[] | select(.name == n)];
# has_option(n; v): exactly one option named n, with value v (null = no value,
# which the kubelet renders as a bare "n"; an empty string would render "n:").
def has_option(n; v): (option(n) | length) == 1 and option(n)[0].value == v;
def options_unique: (options | map(.name)) as $n | ($n | length) == ($n | unique | length);
def option_names: [options[].name];

# The search path the kubelet gives a ClusterFirst pod, in this order.
def cluster_searches(ns; domain): [ns + ".svc." + domain, "svc." + domain, domain];
# The rendered search line as the kubelet writes it into resolv.conf.
def search_line: "search " + (searches | join(" "));
def search_chars: searches | join(" ") | length;

def marker: (.pod.metadata.annotations // {})["dnsguard.io/injected"];
def resolvers: [.pod.spec.initContainers[]? | select(.name == "dnsguard-resolver")];
def resolver: resolvers[0];
def resolver_first: (.pod.spec.initContainers // [])[0].name == "dnsguard-resolver";
def resolver_args: (resolver.args // []) + (resolver.command // []);
def pod_sysctl(n): [.pod.spec.securityContext.sysctls[]? | select(.name == n) | .value];

# strip_injection removes exactly what the webhook is allowed to change, so that
# the rest of the pod can be compared with the original: dnsPolicy, dnsConfig,
# the marker annotation, the resolver init container and its port sysctl.
def strip_injection:
  del(.spec.dnsPolicy, .spec.dnsConfig)
  | if .metadata.annotations then del(.metadata.annotations["dnsguard.io/injected"]) else . end
  | if (.metadata.annotations // {}) == {} then del(.metadata.annotations) else . end
  | .spec.initContainers = [.spec.initContainers[]? | select(.name != "dnsguard-resolver")]
  | if .spec.initContainers == [] then del(.spec.initContainers) else . end
  | .spec.securityContext = (.spec.securityContext // {})
  | .spec.securityContext.sysctls = [.spec.securityContext.sysctls[]? | select(.name != "net.ipv4.ip_unprivileged_port_start")]
  | if .spec.securityContext.sysctls == [] then del(.spec.securityContext.sysctls) else . end;
def only_dns_changed: (.orig | strip_injection) == (.pod | strip_injection);

# The idempotency re-review (run.sh posts the patched pod as a new review).
def again_unpatched: .again.allowed == true and ((.again_patch // []) | length) == 0;

# /explain: the resolv.conf the pod will get, parsed the way a resolver would.
def rc_lines(k): [(.response.resolvConf // "") | split("\n")[] | select(test("^\\s*" + k + "(\\s|$)")) | sub("^\\s*" + k + "\\s*"; "") | sub("\\s+$"; "")];
def rc_words(k): [rc_lines(k)[] | split(" ")[] | select(. != "")];
def rc_nameservers: rc_lines("nameserver");
def rc_search: rc_words("search");
def rc_options: rc_words("options");

# api_valid_dns: what the API server's pod validation demands of the DNS
# fields (a patch breaking it would make every pod creation fail): at most 3
# nameservers, all IP addresses, at least one with dnsPolicy None; at most 32
# searches, each a DNS subdomain, 2048 characters with the spaces; named options.
def valid_ipv4: test("^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$");
def valid_ip: valid_ipv4 or test("^[0-9a-fA-F:.]+$") and test(":");
def valid_subdomain: length <= 253 and test("^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\\.?$") and all(split(".")[]; length <= 63);
def api_valid_dns:
  (nameservers | length <= 3 and all(.[]; valid_ip))
  and (searches | length <= 32 and all(.[]; valid_subdomain))
  and search_chars <= 2048
  and all(options[]; (.name // "") != "")
  and (.pod.spec.dnsPolicy != "None" or (nameservers | length) >= 1);

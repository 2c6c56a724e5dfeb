build-me-asan/src/router/router_proxy.o: src/router/router_proxy.c \
 src/core/banned.h src/compat/http_stream.h src/compat/http.h \
 src/core/strbuf.h src/core/util.h src/router/router_internal.h \
 src/router/router.h
src/core/banned.h:
src/compat/http_stream.h:
src/compat/http.h:
src/core/strbuf.h:
src/core/util.h:
src/router/router_internal.h:
src/router/router.h:

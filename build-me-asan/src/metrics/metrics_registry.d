build-me-asan/src/metrics/metrics_registry.o: \
 src/metrics/metrics_registry.c src/core/banned.h \
 src/metrics/metrics_internal.h src/metrics/metrics.h src/core/strbuf.h \
 src/core/util.h
src/core/banned.h:
src/metrics/metrics_internal.h:
src/metrics/metrics.h:
src/core/strbuf.h:
src/core/util.h:

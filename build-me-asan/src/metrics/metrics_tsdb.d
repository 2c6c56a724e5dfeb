build-me-asan/src/metrics/metrics_tsdb.o: src/metrics/metrics_tsdb.c \
 src/core/banned.h src/metrics/metrics_internal.h src/metrics/metrics.h \
 src/core/strbuf.h src/compat/gzip.h src/core/util.h
src/core/banned.h:
src/metrics/metrics_internal.h:
src/metrics/metrics.h:
src/core/strbuf.h:
src/compat/gzip.h:
src/core/util.h:

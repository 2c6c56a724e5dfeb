build-me/src/router/router_metrics.o: src/router/router_metrics.c \
 src/core/banned.h src/router/router_metrics.h \
 src/router/router_internal.h src/router/router.h src/core/util.h
src/core/banned.h:
src/router/router_metrics.h:
src/router/router_internal.h:
src/router/router.h:
src/core/util.h:

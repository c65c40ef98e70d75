package org.slf4j.impl;

import org.slf4j.ILoggerFactory;
import org.slf4j.LoggerFactory;
import org.slf4j.helpers.NOPLoggerFactory;

/**
 * An SLF4J 1.x-style binding that hands out Spark's own SLF4J 2 logger factory (log4j2).
 *
 * <p>The AWS SDK bundle that S3A uses relocates SLF4J 1.7 and adapts it to whatever
 * {@code org.slf4j.impl.StaticLoggerBinder} the class path holds. SLF4J 2 has none, so on the
 * first S3 call the bundle prints "Failed to load class org.slf4j.impl.StaticLoggerBinder" and
 * drops its log lines. With this binding they go to Spark's log4j2 configuration like any
 * other (SLF4J 2 itself ignores 1.x bindings when it has a provider, as it has here).
 *
 * <p>When a class path puts an SLF4J 1.x API ahead of Spark's SLF4J 2, that API's LoggerFactory
 * asks this binding, which would ask that LoggerFactory again: the question is answered without
 * logging instead of recursing into a StackOverflowError (which kills the JVM at start-up).
 */
public final class StaticLoggerBinder {
  private static final StaticLoggerBinder SINGLETON = new StaticLoggerBinder();

  /** The SLF4J API version this binding answers to. */
  public static String REQUESTED_API_VERSION = "1.7.36";

  private StaticLoggerBinder() {}

  public static StaticLoggerBinder getSingleton() {
    return SINGLETON;
  }

  private static final ThreadLocal<Boolean> ASKING = ThreadLocal.withInitial(() -> Boolean.FALSE);

  public ILoggerFactory getLoggerFactory() {
    if (ASKING.get()) {
      return new NOPLoggerFactory();
    }
    ASKING.set(Boolean.TRUE);
    try {
      return LoggerFactory.getILoggerFactory();
    } finally {
      ASKING.set(Boolean.FALSE);
    }
  }

  public String getLoggerFactoryClassStr() {
    return getLoggerFactory().getClass().getName();
  }
}

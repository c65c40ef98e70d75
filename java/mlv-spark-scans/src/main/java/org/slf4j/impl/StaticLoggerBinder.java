package org.slf4j.impl;

import org.slf4j.ILoggerFactory;
import org.slf4j.LoggerFactory;

/**
 * An SLF4J 1.x-style binding that hands out Spark's own SLF4J 2 logger factory (log4j2).
 *
 * <p>The AWS SDK bundle that S3A uses relocates SLF4J 1.7 and adapts it to whatever
 * {@code org.slf4j.impl.StaticLoggerBinder} the class path holds. SLF4J 2 has none, so on the
 * first S3 call the bundle prints "Failed to load class org.slf4j.impl.StaticLoggerBinder" and
 * drops its log lines. With this binding they go to Spark's log4j2 configuration like any
 * other (SLF4J 2 itself ignores 1.x bindings when it has a provider, as it has here).
 */
public final class StaticLoggerBinder {
  private static final StaticLoggerBinder SINGLETON = new StaticLoggerBinder();

  /** The SLF4J API version this binding answers to. */
  public static String REQUESTED_API_VERSION = "1.7.36";

  private StaticLoggerBinder() {}

  public static StaticLoggerBinder getSingleton() {
    return SINGLETON;
  }

  public ILoggerFactory getLoggerFactory() {
    return LoggerFactory.getILoggerFactory();
  }

  public String getLoggerFactoryClassStr() {
    return LoggerFactory.getILoggerFactory().getClass().getName();
  }
}

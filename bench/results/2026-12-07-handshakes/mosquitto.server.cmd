/usr/sbin/mosquitto -c $WORK/mosquitto.conf
